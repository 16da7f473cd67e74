// Discovery in the lab (issue 4): the manager and `devif-usb` against real
// gadgets and uhid devices. Expected events come from the test's own plug log;
// the kernel's sysfs is the ground truth for what is present.
import Devif
import DevifCore
import Foundation
import Synchronization

/// Classes the lab defines in a catalog file, so composite interfaces have classes.
enum LabClasses {
    static let vendorBulk = try! GUID(parsing: "{6f3c2d1e-0b7a-4c55-9a61-3d2c1b0a9f01}")
    static let hidInterface = try! GUID(parsing: "{6f3c2d1e-0b7a-4c55-9a61-3d2c1b0a9f02}")
    static let folder = "/tmp/devif-lab-classes"

    static func install() throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try """
        # Lab classes: a composite device's interfaces by their USB class.
        [class \(vendorBulk)]
        name = lab-vendor-bulk
        match = usb-class=ff

        [class \(hidInterface)]
        name = lab-hid-interface
        match = usb-class=03
        """.write(toFile: folder + "/50-lab.conf", atomically: true, encoding: .utf8)
    }
}

let usbDeviceClass = WellKnownClass.usbDevice.guid
let hidClass = WellKnownClass.hid.guid

/// A started manager with a fresh registry and the lab catalog, watching
/// from before anything is plugged; events land in an inbox.
final class ManagerFixture: Sendable {
    let manager: DeviceManager
    let watch: InterfaceWatch
    let events = Inbox<InterfaceEvent>()
    let overflows = Counter()
    private let pump: Task<Void, Never>

    init(filter: InterfaceFilter = .all, registry: String? = nil, classFolders: [String] = [],
         sources: [any DeviceSource]? = nil, onNotice: (@Sendable (String) -> Void)? = nil) async throws {
        try LabClasses.install()
        var o = DeviceManager.Options()
        o.registryPath = registry ?? "/tmp/devif-lab-\(UUID().uuidString).sqlite"
        o.classFolders = [LabClasses.folder] + classFolders
        o.sources = sources
        manager = try DeviceManager(options: o)
        if let onNotice { manager.onNotice { onNotice($0.description) } }
        manager.start()
        try expect(await manager.waitUntilEnumerated(timeout: .seconds(20)), "the sources did not finish enumerating in 20 s")
        watch = manager.watch(filter)
        let events = self.events
        let updates = watch.updates
        let overflows = self.overflows
        pump = Task { [overflows] in
            for await u in updates {
                switch u {
                case .event(let e): events.post(e)
                case .overflow: overflows.value.add(1, ordering: .relaxed)
                }
            }
        }
    }

    /// The next `n` events for which `predicate` holds (others are skipped), in order.
    func next(_ n: Int, within seconds: Double = 20, _ what: String,
              where predicate: @escaping @Sendable (InterfaceEvent) -> Bool) async throws -> [InterfaceEvent] {
        var got: [InterfaceEvent] = []
        for k in 0..<n { got.append(try await events.next(within: seconds, "\(what) (\(k + 1) of \(n))", where: predicate)) }
        return got
    }

    func stop() {
        watch.cancel()
        pump.cancel()
        manager.stop()
    }
}

func isDevice(_ vid: UInt16, _ pid: UInt16) -> @Sendable (InterfaceEvent) -> Bool {
    { $0.interface.vendorId == vid && $0.interface.productId == pid }
}

/// The USB devices sysfs lists (ground truth): "vid:pid serial-or-nil".
func sysfsUSBDevices() -> Set<String> {
    let base = "/sys/bus/usb/devices"
    var out = Set<String>()
    for name in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where !name.contains(":") {
        func attr(_ a: String) -> String? {
            (try? String(contentsOfFile: "\(base)/\(name)/\(a)", encoding: .utf8))?.trimmingCharacters(in: .newlines)
        }
        guard let v = attr("idVendor"), let p = attr("idProduct"), v != "1d6b" else { continue }  // skip root hubs
        out.insert("\(v):\(p) \(attr("serial") ?? "-") \(name)")
    }
    return out
}

/// `list --json` through the real CLI; returns the decoded objects.
func cliList(_ extra: [String] = [], registry: String) throws -> [[String: Any]] {
    let out = try runCLI(["list", "--json", "--registry", registry, "--classes-dir", LabClasses.folder] + extra)
    guard let array = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]] else {
        throw LabFailure("list --json did not print an array: \(out.prefix(300))")
    }
    return array
}

@discardableResult
func runCLI(_ args: [String], expectStatus: Int32 = 0) throws -> String {
    let r = try runProcess(devifUSBPath, args)
    guard r.status == expectStatus else {
        throw LabFailure("devif-usb \(args.joined(separator: " ")) exited \(r.status), expected \(expectStatus): \(r.stderr)")
    }
    return r.output
}

/// Checks that the USB-device instances `list --json` reports present are
/// exactly the (non-hub) USB devices sysfs has.
func expectListAgreesWithSysfs(registry: String, _ step: String) throws {
    let listed = try cliList(["--class", "usb-device"], registry: registry)
    let fromList = Set(listed.compactMap { o -> String? in
        guard let v = o["vendorId"] as? String, let p = o["productId"] as? String, v != "1d6b" else { return nil }
        return "\(v):\(p) \((o["serialNumber"] as? String) ?? "-") \((o["portChain"] as? String) ?? "?")"
    })
    let truth = sysfsUSBDevices()
    try expect(fromList == truth, "\(step): list --json \(fromList.sorted()) != sysfs \(truth.sorted())")
}

func registerDiscoveryTests(_ r: inout LabRunner) {
    r.add("discovery: a HID gadget arrives and leaves as usb-device and hid instances with the right links") {
        let f = try await ManagerFixture()
        defer { f.stop() }
        try Devlab.run(["create", "dh1", "hid", "--vid", "1209", "--pid", "0b01", "--serial", "LAB-DH-1",
                        "--manufacturer", "devif lab", "--product", "Disc HID"])
        let plugged = try Devlab.plug("dh1")
        // A single-interface HID gadget: usb-device and lab-hid-interface (its one
        // interface's class goes to the device instance) from USB, hid from hidraw.
        let arrivals = try await f.next(3, "arrivals of 1209:0b01", where: isDevice(0x1209, 0x0b01))
        let byClass = Dictionary(arrivals.map { ($0.interface.classGuid, $0) }, uniquingKeysWith: { a, _ in a })
        let usb = try byClass[usbDeviceClass].orFail("no usb-device arrival among \(arrivals.map(\.interface.symbolicLink.rawValue))")
        let hid = try byClass[hidClass].orFail("no hid arrival among \(arrivals.map(\.interface.symbolicLink.rawValue))")
        try expectEqual(byClass[LabClasses.hidInterface]?.interface.symbolicLink.rawValue,
                        "usb#vid_1209&pid_0b01#LAB-DH-1#\(LabClasses.hidInterface)", "the interface class on the device instance")
        try expectEqual(usb.interface.symbolicLink.rawValue, "usb#vid_1209&pid_0b01#LAB-DH-1#\(usbDeviceClass)", "usb link")
        try expectEqual(hid.interface.symbolicLink.rawValue, "hid#vid_1209&pid_0b01&mi_00#LAB-DH-1#\(hidClass)", "hid link")
        try expectEqual(usb.interface.portChain?.description, plugged.port_chain, "port chain")
        try expectEqual(usb.interface.manufacturer, "devif lab", "manufacturer")
        try expectEqual(usb.interface.product, "Disc HID", "product")
        try expectEqual(usb.interface.access, .ok, "access (root)")
        try expect(hid.interface.devnode.map { plugged.hidraw?.contains($0) ?? false } ?? false,
                   "hid devnode \(hid.interface.devnode ?? "nil") not among \(plugged.hidraw ?? [])")
        try expect(zip(arrivals, arrivals.dropFirst()).allSatisfy { $0.seq < $1.seq }, "sequence numbers not increasing: \(arrivals.map(\.seq))")
        try Devlab.unplug("dh1")
        let removals = try await f.next(3, "removals of 1209:0b01", where: isDevice(0x1209, 0x0b01))
        try expectEqual(Set(removals.map(\.interface.symbolicLink.rawValue)), Set(arrivals.map(\.interface.symbolicLink.rawValue)), "removed links")
        try expect(removals.allSatisfy { $0.event == .removal && !$0.interface.present }, "removal events")
        try expect(f.manager.interfaces(InterfaceFilter(vendorId: 0x1209, productId: 0x0b01)).isEmpty, "still listed after unplug")
    }

    r.add("discovery: a composite device gives one instance per interface with the catalog's classes") {
        let f = try await ManagerFixture()
        defer { f.stop() }
        try Devlab.run(["create", "dc1", "composite", "--vid", "1209", "--pid", "0b02", "--serial", "LAB-DC-1"])
        try Devlab.plug("dc1")
        // usb-device (device), lab-hid-interface (mi_00), lab-vendor-bulk (mi_01), hid (hidraw).
        let arrivals = try await f.next(4, "arrivals of the composite 1209:0b02", where: isDevice(0x1209, 0x0b02))
        let links = Set(arrivals.map(\.interface.symbolicLink.rawValue))
        let expected: Set<String> = [
            "usb#vid_1209&pid_0b02#LAB-DC-1#\(usbDeviceClass)",
            "usb#vid_1209&pid_0b02&mi_00#LAB-DC-1#\(LabClasses.hidInterface)",
            "usb#vid_1209&pid_0b02&mi_01#LAB-DC-1#\(LabClasses.vendorBulk)",
            "hid#vid_1209&pid_0b02&mi_00#LAB-DC-1#\(hidClass)",
        ]
        try expectEqual(links, expected, "composite links")
        let bulk = arrivals.first { $0.interface.classGuid == LabClasses.vendorBulk }
        try expectEqual(bulk?.interface.interfaceNumber, 1, "bulk interface number")
        try expectEqual(bulk?.interface.className, "lab-vendor-bulk", "class name from the catalog file")
        try Devlab.unplug("dc1")
        let removals = try await f.next(4, "removals of the composite", where: isDevice(0x1209, 0x0b02))
        try expectEqual(Set(removals.map(\.interface.symbolicLink.rawValue)), expected, "removed links")
    }

    r.add("discovery: a uhid device (virtual bus) and a device without serial get bus and port links") {
        let f = try await ManagerFixture()
        defer { f.stop() }
        try Devlab.run(["create", "du1", "uhid", "--vid", "1209", "--pid", "0b03", "--serial", "LAB-DU-1",
                        "--product", "Virtual"])
        try Devlab.plug("du1")
        let u = try await f.next(1, "the uhid arrival", where: isDevice(0x1209, 0x0b03))[0]
        try expectEqual(u.interface.kind, .hid, "kind")
        try expectEqual(u.interface.symbolicLink.rawValue, "hid#vid_1209&pid_0b03&bus_06#LAB-DU-1#\(hidClass)", "uhid link")
        try expectEqual(u.interface.portChain, nil, "port chain of a device not on USB")

        try Devlab.run(["create", "dn1", "loopback", "--vid", "1209", "--pid", "0b04", "--no-serial"])
        let plugged = try Devlab.plug("dn1")
        let n = try await f.next(1, "the no-serial arrival", where: isDevice(0x1209, 0x0b04))[0]
        let port = try plugged.port_chain.orFail("devlab gave no port chain")
        try expectEqual(n.interface.symbolicLink.rawValue, "usb#vid_1209&pid_0b04#@\(port)#\(usbDeviceClass)", "no-serial link")
        try expectEqual(n.interface.serialNumber, nil, "serial")
        try Devlab.unplug("du1")
        _ = try await f.next(1, "the uhid removal", where: { isDevice(0x1209, 0x0b03)($0) && $0.event == .removal })
    }

    r.add("discovery: three uhid devices identical in every string are all named (serial, serial@phys, then the ordinal !2), each opens and echoes, and a notice says why") {
        let notices = Inbox<String>()
        let f = try await ManagerFixture(onNotice: { notices.post($0) })
        defer { f.stop() }
        let names = ["dt1", "dt2", "dt3"]
        for n in names {
            try Devlab.run(["create", n, "uhid", "--vid", "1209", "--pid", "0b0e", "--serial", "LAB-SAME",
                            "--product", "Same", "--phys", "devlab/same"])
        }
        var byNode: [String: String] = [:]
        for n in names {
            try Devlab.plug(n)  // one at a time: the names follow the order of arrival
            let e = try await f.next(1, "the hid arrival of \(n)", where: { isDevice(0x1209, 0x0b0e)($0) && $0.interface.classGuid == hidClass })[0]
            byNode[try e.interface.devnode.orFail("no devnode for \(e.interface.symbolicLink.rawValue)")] = e.interface.symbolicLink.rawValue
        }
        let base = "hid#vid_1209&pid_0b0e&bus_06#LAB-SAME"
        try expectEqual(Set(byNode.values), ["\(base)#\(hidClass)", "\(base)@devlab%2Fsame#\(hidClass)",
                                             "\(base)@devlab%2Fsame!2#\(hidClass)"], "the three links")
        let said = try await notices.next(within: 10, "the notice about the ordinal") { $0.contains("ordinal !2") }
        try expect(said.contains("\(base)@devlab%2Fsame!2#"), "the notice names the link: \(said)")
        // Each link opens its own device: the echo comes back through the same node.
        for (node, link) in byNode.sorted(by: { $0.key < $1.key }) {
            let h = try f.manager.openHID(link)
            defer { h.close() }
            let payload = (0..<64).map { UInt8(truncatingIfNeeded: $0 &+ node.utf8.count &* 3 &+ Int(node.utf8.last ?? 0)) }
            try h.write(outputReport: [0] + payload)
            try expectEqual(try h.read(timeout: .seconds(2)), payload, "echo through \(link) (\(node))")
        }
        try Devlab.batch(names.map { "unplug \($0)" })
        let removals = try await f.next(3, "the three removals", where: { isDevice(0x1209, 0x0b0e)($0) && $0.event == .removal && $0.interface.classGuid == hidClass })
        try expectEqual(Set(removals.map(\.interface.symbolicLink.rawValue)), Set(byNode.values), "the removed links")
        figure("identical uhid devices: \(byNode.values.sorted())")
    }

    r.add("discovery: replugged 10 times a device keeps its link; a no-serial device on the same port too") {
        let f = try await ManagerFixture(filter: InterfaceFilter(classGuid: usbDeviceClass))
        defer { f.stop() }
        try Devlab.run(["create", "dr1", "sourcesink", "--vid", "1209", "--pid", "0b05", "--serial", "LAB-DR-1"])
        try Devlab.run(["create", "dr2", "sourcesink", "--vid", "1209", "--pid", "0b06", "--no-serial"])
        var links: [String: Set<String>] = ["0b05": [], "0b06": []]
        for round in 1...10 {
            // Pinned controllers: "the same port" is part of what is tested.
            try Devlab.batch(["plug dr1 --udc dummy_udc.3 --wait 20", "plug dr2 --udc dummy_udc.4 --wait 20"])
            for pid: UInt16 in [0x0b05, 0x0b06] {
                let a = try await f.next(1, "arrival #\(round) of \(hex(pid))", where: isDevice(0x1209, pid))[0]
                try expectEqual(a.event, .arrival, "event #\(round) of \(hex(pid))")
                links[hex(pid)]!.insert(a.interface.symbolicLink.rawValue)
            }
            try Devlab.batch(["unplug dr1 --wait 20", "unplug dr2 --wait 20"])
            for pid: UInt16 in [0x0b05, 0x0b06] {
                let l = try await f.next(1, "removal #\(round) of \(hex(pid))", where: isDevice(0x1209, pid))[0]
                try expectEqual(l.event, .removal, "event #\(round) of \(hex(pid))")
            }
        }
        try expectEqual(links["0b05"]!.count, 1, "distinct links of the serial device over 10 plugs: \(links["0b05"]!)")
        try expectEqual(links["0b06"]!.count, 1, "distinct links of the no-serial device over 10 plugs: \(links["0b06"]!)")
    }

    r.add("discovery: two devices with the same serial at once never share a link") {
        let f = try await ManagerFixture()
        defer { f.stop() }
        try Devlab.run(["create", "ds1", "loopback", "--vid", "1209", "--pid", "0b07", "--serial", "SAME-SERIAL"])
        try Devlab.run(["create", "ds2", "loopback", "--vid", "1209", "--pid", "0b07", "--serial", "SAME-SERIAL"])
        try Devlab.plug("ds1")
        try Devlab.plug("ds2")
        let a = try await f.next(2, "usb-device arrivals of the twins",
                                 where: { isDevice(0x1209, 0x0b07)($0) && $0.interface.classGuid == usbDeviceClass })
        try expect(a[0].interface.symbolicLink.rawValue != a[1].interface.symbolicLink.rawValue,
                   "both twins named \(a[0].interface.symbolicLink.rawValue)")
        let present = f.manager.interfaces(InterfaceFilter(classGuid: usbDeviceClass, vendorId: 0x1209, productId: 0x0b07))
        try expectEqual(Set(present.map(\.symbolicLink.rawValue)).count, 2, "distinct present twins")
        // The first keeps the serial-only name; the second's carries its port too.
        try expect(a.contains { $0.interface.symbolicLink.rawValue == "usb#vid_1209&pid_0b07#SAME-SERIAL#\(usbDeviceClass)" },
                   "neither twin has the serial-only link: \(a.map(\.interface.symbolicLink.rawValue))")
    }

    r.add("discovery: 32 devices plugged at once then unplugged: watch --json reports 32 arrivals and 32 removals per class, in order per link") {
        let registry = "/tmp/devif-lab-storm32.sqlite"
        try LabClasses.install()
        let names = (0..<32).map { String(format: "m%02d", $0) }
        for (k, n) in names.enumerated() {
            try Devlab.run(["create", n, "loopback", "--vid", "1209", "--pid", "0c00", "--serial", "LAB-M-\(k)"])
        }
        // A sentinel plugged first (uhid: it takes none of the 32 controllers):
        // when the watcher prints it, the watcher is watching.
        try Devlab.run(["create", "sentinel", "uhid", "--vid", "1209", "--pid", "0c01"])
        try Devlab.plug("sentinel")
        let watcher = try CLIWatcher(["watch", "--enumerate", "--json",
                                      "--registry", registry, "--classes-dir", LabClasses.folder])
        defer { watcher.kill() }
        _ = try await watcher.next(1, within: 30, "the watcher to report the sentinel") { $0.productId == "0c01" }
        try Devlab.batch(names.map { "plug \($0)" })
        try Devlab.wait(names)
        // Each Loopback device is in two classes: usb-device and lab-vendor-bulk.
        let arrivals = try await watcher.next(64, within: 90, "arrivals of the 32") { $0.productId == "0c00" }
        try Devlab.batch(names.map { "unplug \($0)" })
        try Devlab.wait(names, gone: true)
        let removals = try await watcher.next(64, within: 90, "removals of the 32") { $0.productId == "0c00" }
        try expectEqual(try watcher.interrupt(), 0, "watcher exit status after SIGINT")
        var perLink: [String: [String]] = [:]
        var perClass: [String: [String: Int]] = [:]
        var lastSeq = -1
        for o in arrivals + removals {
            perLink[o.link, default: []].append(o.event)
            perClass[o.classGuid, default: [:]][o.event, default: 0] += 1
            try expect(o.seq > lastSeq, "seq not increasing: \(o.seq) after \(lastSeq)")
            lastSeq = o.seq
        }
        try expectEqual(perLink.count, 64, "distinct links (32 devices x 2 classes)")
        for (link, events) in perLink { try expectEqual(events, ["arrival", "removal"], "events of \(link)") }
        for guid in [usbDeviceClass.description, LabClasses.vendorBulk.description] {
            try expectEqual(perClass[guid] ?? [:], ["arrival": 32, "removal": 32], "events in class \(guid)")
        }
        try expectEqual(watcher.count(where: { $0.productId == "0c00" }), 128, "lines printed for the 32 (a duplicate would make more)")
    }

    r.add("discovery: a watch started while devices are plugging in gets each exactly once") {
        let names = (0..<16).map { String(format: "w%02d", $0) }
        for (k, n) in names.enumerated() {
            try Devlab.run(["create", n, "loopback", "--vid", "1209", "--pid", "0c02", "--serial", "LAB-W-\(k)"])
        }
        // Plugging runs in another process while the manager starts and the watch begins.
        let plugger = Task.detached { try Devlab.batch(names.map { "plug \($0)" }) }
        let f = try await ManagerFixture(filter: InterfaceFilter(classGuid: usbDeviceClass, vendorId: 0x1209, productId: 0x0c02))
        defer { f.stop() }
        try await plugger.value
        try Devlab.wait(names)
        let fromSnapshot = f.watch.snapshot.map(\.symbolicLink.rawValue)
        let live = try await f.next(16 - fromSnapshot.count, within: 60, "live arrivals after a snapshot of \(fromSnapshot.count)") { _ in true }
        try expect(live.allSatisfy { $0.event == .arrival }, "a removal among the arrivals")
        let all = fromSnapshot + live.map(\.interface.symbolicLink.rawValue)
        try expectEqual(Set(all).count, 16, "distinct devices seen")
        try expectEqual(all.count, 16, "snapshot + changes (a duplicate would make it more)")
        try expect(live.map(\.seq).allSatisfy { s in f.watch.snapshotEvents.allSatisfy { $0.seq < s } },
                   "a change older than the snapshot")
        try Devlab.batch(names.map { "unplug \($0)" })
        let removals = try await f.next(16, within: 60, "the 16 removals") { _ in true }
        try expect(removals.allSatisfy { $0.event == .removal }, "an arrival among the removals (a late duplicate)")
    }

    r.add("discovery: list --json has exactly the documented keys; info --json shows descriptors, classes, node, access") {
        let registry = "/tmp/devif-lab-info.sqlite"
        try LabClasses.install()
        try Devlab.run(["create", "i1", "composite", "--vid", "1209", "--pid", "0c06", "--serial", "LAB-I-1",
                        "--manufacturer", "devif lab", "--product", "Info composite"])
        let plugged = try Devlab.plug("i1")
        try settleUdev()
        let list = try cliList(["--class", "usb-device"], registry: registry).filter { ($0["productId"] as? String) == "0c06" }
        try expectEqual(list.count, 1, "usb-device instances of 1209:0c06")
        let keys = ["symbolicLink", "classGuid", "className", "kind", "vendorId", "productId", "serialNumber",
                    "interfaceNumber", "portChain", "devnode", "manufacturer", "product", "present", "access", "leftBeforeReady", "remote"]
        try expectEqual(Set(list[0].keys), Set(keys), "keys of a list --json object")
        try expect(list[0]["interfaceNumber"] is NSNull, "interfaceNumber of a device instance is not null")
        try expectEqual(list[0]["portChain"] as? String, plugged.port_chain, "portChain")
        let link = try (list[0]["symbolicLink"] as? String).orFail("no symbolicLink")
        let out = try runCLI(["info", link, "--json", "--registry", registry, "--classes-dir", LabClasses.folder])
        let info = try (JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]).orFail("info --json is not an object: \(out.prefix(200))")
        try expectEqual(info["symbolicLink"] as? String, link, "info's link")
        try expectEqual(info["access"] as? String, "ok", "access")
        try expectEqual(info["devnode"] as? String, list[0]["devnode"] as? String, "devnode")
        let configurations = try (info["configurations"] as? [[String: Any]]).orFail("no configurations")
        let interfaces = configurations.first?["interfaces"] as? [[String: Any]] ?? []
        try expectEqual(Set(interfaces.compactMap { $0["class"] as? String }), ["03/00/00", "ff/00/00"], "interface classes")
        let classes = (info["classes"] as? [[String: Any]] ?? []).compactMap { $0["className"] as? String }
        try expect(classes.contains("usb-device"), "classes of the instance: \(classes)")
        // The unknown-link contract, in the lab too.
        _ = try runCLI(["info", link.replacingOccurrences(of: "LAB-I-1", with: "NOPE"), "--registry", registry], expectStatus: 65)
    }

    r.add("discovery: list --json agrees with sysfs after every plug and unplug") {
        let registry = "/tmp/devif-lab-list.sqlite"
        try LabClasses.install()
        let steps: [(String, String)] = [("plug", "l1"), ("plug", "l2"), ("plug", "l3"), ("unplug", "l2"),
                                         ("plug", "l2"), ("unplug", "l1"), ("unplug", "l3"), ("unplug", "l2")]
        try Devlab.run(["create", "l1", "hid", "--vid", "1209", "--pid", "0c03", "--serial", "LAB-L-1"])
        try Devlab.run(["create", "l2", "loopback", "--vid", "1209", "--pid", "0c04", "--no-serial"])
        try Devlab.run(["create", "l3", "composite", "--vid", "1209", "--pid", "0c05", "--serial", "LAB-L-3"])
        try expectListAgreesWithSysfs(registry: registry, "before any plug")
        for (action, name) in steps {
            if action == "plug" { try Devlab.plug(name) } else { try Devlab.unplug(name) }
            try settleUdev()
            try expectListAgreesWithSysfs(registry: registry, "after \(action) \(name)")
        }
        // --all remembers what was seen, now absent.
        let all = try cliList(["--all"], registry: registry)
        try expect(all.contains { ($0["productId"] as? String) == "0c05" && ($0["present"] as? Bool) == false },
                   "list --all does not remember the composite as absent")
    }
}

/// Waits for udev to finish processing queued events (an event wait, not a sleep).
func settleUdev() throws {
    try expectEqual(try runTool("/usr/bin/udevadm", ["settle", "--timeout=30"]), 0, "udevadm settle status")
}

final class Counter: Sendable { let value = Atomic<Int>(0) }

/// One line of `watch --json`, with the fields the tests read.
struct WatchLine: Sendable {
    let productId: String
    let link: String
    let event: String
    let seq: Int
    let classGuid: String
    init(_ o: [String: Any]) {
        classGuid = o["classGuid"] as? String ?? ""
        productId = o["productId"] as? String ?? ""
        link = o["symbolicLink"] as? String ?? ""
        event = o["event"] as? String ?? ""
        seq = o["seq"] as? Int ?? -1
    }
}

/// A `devif-usb watch --json` process whose lines are read as they come.
final class CLIWatcher: @unchecked Sendable {  // the Process is only touched from the test task
    let process = Process()
    private let lines = Inbox<WatchLine>()
    private let seen = Mutex<[WatchLine]>([])

    init(_ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: devifUSBPath)
        process.arguments = args
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        forEachLine(of: out.fileHandleForReading) { [lines, self] line in
            if let o = try? JSONSerialization.jsonObject(with: line) as? [String: Any] {
                let l = WatchLine(o)
                self.seen.withLock { $0.append(l) }
                lines.post(l)
            }
        }
    }

    /// The next `n` lines satisfying `predicate`, within `seconds` in all.
    func next(_ n: Int, within seconds: Double, _ what: String,
              where predicate: @escaping @Sendable (WatchLine) -> Bool) async throws -> [WatchLine] {
        var got: [WatchLine] = []
        for k in 0..<n {
            got.append(try await lines.next(within: seconds, "\(what) (\(k + 1) of \(n))", where: predicate))
        }
        return got
    }

    /// How many lines printed so far satisfy `predicate`.
    func count(where predicate: (WatchLine) -> Bool) -> Int {
        seen.withLock { $0.filter(predicate).count }
    }

    /// Sends SIGINT and returns the exit status (bounded wait).
    func interrupt() throws -> Int32 { try interruptChild(process, "watcher") }

    func kill() { if process.isRunning { process.terminate() } }
}

extension Optional {
    func orFail(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) throws -> Wrapped {
        guard let self else { throw LabFailure(message(), file: file, line: line) }
        return self
    }
}

// Firmware-declared interface GUIDs in the lab (issue 7): FunctionFS gadgets
// whose MS OS 1.0 descriptors (configfs os_desc, answered by the kernel's
// composite layer) declare a DeviceInterfaceGUID. The host side's requests
// are observed on the bus itself with usbmon, so "string 0xEE is asked once
// per model" is checked on the wire, not inferred from devif's own account.
//
// MS OS 2.0 is not tested here: the lab kernel (Debian 6.1) cannot answer a
// BOS platform capability (composite.c builds the BOS without one, FunctionFS
// and gadgetfs never see GET_DESCRIPTOR(BOS), and CONFIG_USB_RAW_GADGET is
// off); the unit tests drive the 2.0 fetch with real descriptor bytes
// through a fake device instead (DevifSourcesTests/MSOSFetcherTests.swift).
import Devif
import DevifCore
import DevifUSB
import Foundation
import Synchronization

enum FirmwareLab {
    static let sz = try! GUID(parsing: "{8f3b2c1d-0a9e-4d7b-b6c5-1e2f3a4b5c6d}")
    static let multi = try! GUID(parsing: "{8f3b2c1d-0a9e-4d7b-b6c5-1e2f3a4b5c6e}")
    static let notProbed = try! GUID(parsing: "{8f3b2c1d-0a9e-4d7b-b6c5-1e2f3a4b5c6f}")
    static let folder = "/tmp/devif-lab-msos-classes"

    /// Probing allowed for 1209:0f01 and 1209:0f02 (not 0f03); the REG_SZ GUID has a name.
    static func install() throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try """
        [ms-os-1.0]
        probe = vid=1209 pid=0f01
        probe = vid=1209 pid=0f02

        [class \(sz)]
        name = lab-winusb
        """.write(toFile: folder + "/50-msos.conf", atomically: true, encoding: .utf8)
    }

    static var rules: [MSOS10ProbeRule] {
        [MSOS10ProbeRule(vendorID: 0x1209, productID: 0x0f01), MSOS10ProbeRule(vendorID: 0x1209, productID: 0x0f02)]
    }

    /// `devif-usb ARGS` with this folder as the catalog (DEVIF_CLASSES_PATH,
    /// which the USB source's probe policy also reads).
    @discardableResult
    static func cli(_ args: [String], expectStatus: Int32 = 0) throws -> String {
        let r = try runProcess("/usr/bin/env", ["DEVIF_CLASSES_PATH=\(folder)", devifUSBPath] + args)
        guard r.status == expectStatus else {
            throw LabFailure("devif-usb \(args.joined(separator: " ")) exited \(r.status), expected \(expectStatus): \(r.stderr)")
        }
        return r.output
    }

    /// Present instances of class `guid`, from `list --class {guid} --json`.
    static func list(_ guid: GUID, registry: String) throws -> [[String: Any]] {
        let out = try cli(["list", "--json", "--registry", registry, "--class", guid.description])
        guard let array = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]] else {
            throw LabFailure("list --json did not print an array: \(out.prefix(300))")
        }
        return array
    }
}

/// Every control request the host sends on any bus, from usbmon's text
/// interface (`/sys/kernel/debug/usb/usbmon/0u`), read by a thread of its
/// own with plain read(2) (no child process: a lingering reader must not
/// hold any pipe that another step waits on).
final class UsbmonTap: Sendable {
    private final class State: Sendable {
        let text = Mutex("")
        let stopped = Atomic<Bool>(false)
    }
    private let state = State()

    init() throws {
        let setup = try runProcess("/bin/sh", ["-c",
            "mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug; modprobe usbmon"])
        try expect(setup.status == 0, "mounting debugfs / loading usbmon failed: \(setup.stderr)")
        let fd = open("/sys/kernel/debug/usb/usbmon/0u", O_RDONLY | O_CLOEXEC)
        try expect(fd >= 0, "cannot open usbmon's 0u: errno \(errno)")
        let state = self.state
        // Blocking reads: the thread ends at the first read after stop()
        // (any USB traffic), or with the process.
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while !state.stopped.load(ordering: .acquiring) {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                let chunk = String(decoding: buffer[0..<n], as: UTF8.self)
                state.text.withLock { $0 += chunk }
            }
            close(fd)
        }
    }

    /// Submissions of control-IN requests to device `bus:address` whose setup
    /// starts with `setup` (bmRequestType bRequest wValue wIndex, as usbmon
    /// prints them: `80 06 03ee 0000`).
    func count(bus: Int, address: Int, setup: String) -> Int {
        let device = String(format: "Ci:%d:%03d:0 s ", bus, address) + setup
        return state.text.withLock { $0.split(separator: "\n").filter { $0.contains(" S ") && $0.contains(device) }.count }
    }

    /// Waits (bounded) until at least `n` such submissions were seen: usbmon
    /// records a request when it is submitted, and `cat` copies it out soon after.
    func waitFor(_ n: Int, bus: Int, address: Int, setup: String, _ what: String) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while count(bus: bus, address: address, setup: setup) < n {
            guard ContinuousClock.now < deadline else {
                throw LabFailure("usbmon: \(what): saw \(count(bus: bus, address: address, setup: setup)) of \(n) '\(setup)' requests to \(bus):\(address) in 10 s")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func stop() {
        state.stopped.store(true, ordering: .releasing)
    }
}

func registerFirmwareGUIDTests(_ r: inout LabRunner) {
    r.add("firmware GUID: MS OS 1.0 DeviceInterfaceGUID of an ffs gadget; list --class {guid}, unplug, replug, 0xEE asked once") {
        try FirmwareLab.install()
        progress("msos: starting usbmon")
        let tap = try UsbmonTap()
        defer { tap.stop() }
        let registry = "/tmp/devif-lab-msos-\(UUID().uuidString).sqlite"
        let g = FirmwareLab.sz
        progress("msos: usbmon started")
        let osString = "80 06 03ee 0000"      // GET_DESCRIPTOR(STRING 0xEE), language 0
        let compatID = "c0 cd 0000 0004"      // vendor code 0xcd, extended compat ID
        try Devlab.run(["create", "fw1", "ffs", "--vid", "1209", "--pid", "0f01", "--serial", "LAB-FW-1",
                        "--msos-guid", g.description])
        let p1 = try Devlab.plug("fw1")
        progress("msos: fw1 plugged")
        let (bus, a1) = (try p1.busnum.orFail("no bus"), try p1.devnum.orFail("no address"))

        let found = try FirmwareLab.list(g, registry: registry)
        progress("msos: first list done")
        let link = "usb#vid_1209&pid_0f01#LAB-FW-1#\(g)"
        try expectEqual(found.compactMap { $0["symbolicLink"] as? String }, [link], "list --class \(g)")
        try expectEqual(found.first?["className"] as? String, "lab-winusb", "class name from the catalog")
        try await tap.waitFor(2, bus: bus, address: a1, setup: compatID, "the first list's compat ID requests")
        try expectEqual(tap.count(bus: bus, address: a1, setup: osString), 1, "string 0xEE requests after the first list")

        // info names the GUID and where it came from.
        let info = try FirmwareLab.cli(["info", link, "--registry", registry])
        try expect(info.contains("Firmware GUID") && info.contains("\(g) (MS OS 1.0, interface 0)"),
                   "info does not name the firmware GUID: \(info)")

        progress("msos: info done")
        // A second process asks again for the descriptors, but not for string 0xEE.
        try expectEqual(try FirmwareLab.list(g, registry: registry).count, 1, "second list")
        try await tap.waitFor(4, bus: bus, address: a1, setup: compatID, "the second list's compat ID requests")
        try expectEqual(tap.count(bus: bus, address: a1, setup: osString), 1, "string 0xEE requests after the second list")

        try Devlab.unplug("fw1")
        progress("msos: fw1 unplugged")
        try expectEqual(try FirmwareLab.list(g, registry: registry).count, 0, "present instances of \(g) after unplug")

        progress("msos: listed after unplug")
        let p2 = try Devlab.plug("fw1")
        progress("msos: fw1 replugged")
        let a2 = try p2.devnum.orFail("no address")
        try expectEqual(try FirmwareLab.list(g, registry: registry).compactMap { $0["symbolicLink"] as? String },
                        [link], "list --class after replug")
        try await tap.waitFor(2, bus: bus, address: a2, setup: compatID, "the replugged device's compat ID requests")
        try expectEqual(tap.count(bus: bus, address: a2, setup: osString), 0, "string 0xEE requests after replug (remembered)")
    }

    r.add("firmware GUID: a stalled string 0xEE is remembered as absent; a device no probe line names is never asked") {
        try FirmwareLab.install()
        let tap = try UsbmonTap()
        defer { tap.stop() }
        let registry = "/tmp/devif-lab-msos-\(UUID().uuidString).sqlite"
        // fw2 may be probed, but with os_desc off the gadget stalls string 0xEE.
        try Devlab.run(["create", "fw2", "ffs", "--vid", "1209", "--pid", "0f02", "--serial", "LAB-FW-2",
                        "--msos-guid", FirmwareLab.multi.description, "--no-os-desc"])
        // fw3 declares a GUID, but no probe line names 1209:0f03.
        try Devlab.run(["create", "fw3", "ffs", "--vid", "1209", "--pid", "0f03", "--serial", "LAB-FW-3",
                        "--msos-guid", FirmwareLab.notProbed.description])
        let p2 = try Devlab.plug("fw2")
        let p3 = try Devlab.plug("fw3")
        let (bus2, a2) = (try p2.busnum.orFail("no bus"), try p2.devnum.orFail("no address"))
        let (bus3, a3) = (try p3.busnum.orFail("no bus"), try p3.devnum.orFail("no address"))
        for round in 1...2 {
            try expectEqual(try FirmwareLab.list(FirmwareLab.multi, registry: registry).count, 0,
                            "instances of fw2's GUID (its OS string stalls), list \(round)")
            try expectEqual(try FirmwareLab.list(FirmwareLab.notProbed, registry: registry).count, 0,
                            "instances of fw3's GUID (not probed), list \(round)")
            progress("msos: stalled/not-probed list \(round) done")
        }
        // Each list ran to the end (two processes, each enumerated both
        // devices) before these counts: the requests were submitted by then.
        try await tap.waitFor(1, bus: bus2, address: a2, setup: "80 06 03ee 0000", "fw2's string 0xEE request")
        try expectEqual(tap.count(bus: bus2, address: a2, setup: "80 06 03ee 0000"), 1,
                        "string 0xEE requests to fw2 over four lists (the stall is remembered)")
        try expectEqual(tap.count(bus: bus3, address: a3, setup: "80 06 03ee"), 0, "string 0xEE requests to 1209:0f03")
        try expectEqual(tap.count(bus: bus2, address: a2, setup: "c0 cd"), 0, "vendor requests to fw2")
    }

    r.add("firmware GUID: the manager's watch follows an MS OS 1.0 declared class through unplug and replug") {
        try FirmwareLab.install()
        let g = FirmwareLab.sz
        // The manager hands its own catalog's probe lines to the USB source.
        let f = try await ManagerFixture(filter: InterfaceFilter(classGuid: g), classFolders: [FirmwareLab.folder])
        defer { f.stop() }
        try Devlab.run(["create", "fw4", "ffs", "--vid", "1209", "--pid", "0f01", "--serial", "LAB-FW-4",
                        "--msos-guid", g.description])
        let link = "usb#vid_1209&pid_0f01#LAB-FW-4#\(g)"
        for round in 1...2 {
            try Devlab.plug("fw4")
            let a = try await f.next(1, "arrival \(round) of \(g)", where: { $0.interface.classGuid == g })[0]
            try expectEqual(a.event, .arrival, "event \(round)")
            try expectEqual(a.interface.symbolicLink.rawValue, link, "link \(round)")
            try expectEqual(a.interface.snapshot?.firmwareGUIDs, [FirmwareGUID(guid: g, interfaceNumber: 0, source: .msOS10)],
                            "the snapshot's firmware GUIDs \(round)")
            try Devlab.unplug("fw4")
            let gone = try await f.next(1, "removal \(round) of \(g)", where: { $0.interface.classGuid == g })[0]
            try expectEqual(gone.event, .removal, "event after unplug \(round)")
            try expectEqual(gone.interface.symbolicLink.rawValue, link, "removed link \(round)")
        }
    }
}

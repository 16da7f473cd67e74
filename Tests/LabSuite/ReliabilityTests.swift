// Reliability and security in the lab (issue 9): storms, surprise removal,
// leaks, hostile devices.
import Devif
import DevifCore
import DevifHID
import DevifLinux
import Foundation
import Glibc

func registerReliabilityTests(_ r: inout LabRunner) {
    // Timing-bound (100 ms per unplug): on a host loaded by other VMs the
    // emulated kernel itself starts the teardown late; the figures it logs
    // say whose share a slow unplug was.
    registerSurpriseRemovalTest(&r)
    // The gadget limit is 126 bytes per string (configfs); 255 cannot be made
    // here, nor invalid UTF-16 or lying descriptors (the kernel's gadget layer
    // encodes them): those are covered by unit tests and the fuzzers.
    r.add("reliability: hostile strings (/, .., #, &, %, control characters, 126 bytes, uhid name and uniq) and two devices with one serial: distinct single-component links that parse back, list --json agrees, nothing crashes") {
        let f = try await ManagerFixture()
        defer { f.stop() }
        let long = String(String(repeating: "%/#&.\t", count: 22).prefix(126))
        let devices: [(name: String, create: [String], pid: UInt16, instances: Int)] = [
            ("rx1", ["loopback", "--serial", "..", "--manufacturer", "a/b#c&d%e", "--product", "tab\there\u{1b}[31m red\u{7f}"], 0x0e11, 2),
            ("rx2", ["loopback", "--serial", "#&%\u{01}\u{1f} é", "--manufacturer", ".", "--product", "../../etc/passwd"], 0x0e12, 2),
            ("rx3", ["hid", "--serial", long, "--manufacturer", String(repeating: "/", count: 126), "--product", "%00%2F\r\nend"], 0x0e13, 3),
            ("rx4", ["loopback", "--serial", "../twin#1"], 0x0e14, 2),
            ("rx5", ["loopback", "--serial", "../twin#1"], 0x0e14, 2),
            ("rx6", ["uhid", "--serial", "../u#&%\t\u{1b}", "--product", "x/../\u{1b}]0;t\u{07}%n"], 0x0e15, 1),
        ]
        var plugged: [UInt16: [Devlab.Plugged]] = [:]
        for d in devices {
            try Devlab.run(["create", d.name, d.create[0], "--vid", "1209", "--pid", String(format: "%04x", d.pid)] + d.create.dropFirst())
            plugged[d.pid, default: []].append(try Devlab.plug(d.name))
        }
        let pids = Set(devices.map(\.pid))
        let total = devices.map(\.instances).reduce(0, +)
        let arrivals = try await f.next(total, within: 60, "arrivals of the hostile devices",
                                        where: { $0.event == .arrival && $0.interface.vendorId == 0x1209 && pids.contains($0.interface.productId) })
        let links = arrivals.map(\.interface.symbolicLink.rawValue)
        try expectEqual(Set(links).count, total, "distinct links among \(links)")
        for e in arrivals {
            let i = e.interface, link = i.symbolicLink.rawValue
            try expectSafeLink(link)
            guard i.kind == .usb else { continue }
            // The USB strings as the host's kernel read them: devif reports them verbatim.
            let twins = try plugged[i.productId].orFail("no plug record for \(link)")
            let truth = twins.map { p in (serial: p.serial, manufacturer: sysfsString(p.sysfs, "manufacturer"), product: sysfsString(p.sysfs, "product")) }
            try expect(truth.contains { $0.serial == i.serialNumber && $0.manufacturer == i.manufacturer && $0.product == i.product },
                       "\(link): serial/manufacturer/product \(String(reflecting: i.serialNumber)), \(String(reflecting: i.manufacturer)), \(String(reflecting: i.product)) not as sysfs has them: \(truth)")
            let parsed = try SymbolicLink(parsing: link)
            let serial = try i.serialNumber.orFail("\(link): no serial number")
            if i.productId == 0x0e13 {
                guard case .shortened = parsed.serial else { throw LabFailure("\(link): a 126-byte hostile serial is not shortened: \(String(describing: parsed.serial))") }
            } else {
                try expectEqual(parsed.serial, .exact(serial), "\(link): the serial parsed back")
            }
        }
        let twinLinks = arrivals.filter { $0.interface.productId == 0x0e14 && $0.interface.classGuid == usbDeviceClass }.map(\.interface.symbolicLink.rawValue)
        try expectEqual(Set(twinLinks).count, 2, "the twins' usb-device links \(twinLinks)")

        // The CLI, its own process and registry: every instance, each link safe and distinct.
        let registry = "/tmp/devif-lab-\(UUID().uuidString).sqlite"
        let listed = try cliList(registry: registry).filter { o in
            (o["vendorId"] as? String) == "1209" && pids.contains(UInt16((o["productId"] as? String) ?? "", radix: 16) ?? 0)
        }
        let cliLinks = listed.compactMap { $0["symbolicLink"] as? String }
        try expectEqual(cliLinks.count, total, "instances in list --json")
        try expectEqual(Set(cliLinks).count, total, "distinct links in list --json")
        for link in cliLinks { try expectSafeLink(link) }
        // Twins may be named in either order by another process; everything else is the same name.
        let stable = { (l: String) in !l.contains("pid_0e14") }
        try expectEqual(Set(cliLinks.filter(stable)), Set(links.filter(stable)), "list --json links against the manager's")
        let text = try runCLI(["list", "--no-color", "--registry", registry, "--classes-dir", LabClasses.folder])
        let raw = text.unicodeScalars.filter { ($0.value < 0x20 && $0 != "\n") || (0x7F...0x9F).contains($0.value) }
        try expect(raw.isEmpty, "list printed raw control characters \(raw.map { String($0.value, radix: 16) })")
        for link in links.filter({ $0.contains("pid_0e11") || $0.contains("pid_0e15") }) {
            let out = try runCLI(["info", link, "--json", "--registry", registry, "--classes-dir", LabClasses.folder])
            let info = try (JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]).orFail("info --json is not an object: \(out.prefix(200))")
            try expectEqual(info["symbolicLink"] as? String, link, "info --json of \(link)")
        }
        // A hostile link opens like any other.
        let bulk = try links.first { $0.hasPrefix("usb#vid_1209&pid_0e11#") && $0.hasSuffix(usbDeviceClass.description) }.orFail("no usb-device link for rx1")
        let h = try f.manager.openUSB(bulk)
        defer { h.close() }
        let dd = try await h.controlIn(.getDescriptor(type: 1), length: 18)
        try expectEqual(Array(dd[10...11]), [0x11, 0x0e], "idProduct through the hostile link's handle")
        figure("hostile strings: \(total) instances, links e.g. \(links.filter { $0.contains("pid_0e11") || $0.contains("pid_0e15") }.sorted())")
    }
}

func registerSurpriseRemovalTest(_ r: inout LabRunner) {
    r.add("reliability: 100 surprise removals (50 mid bulk stream, 50 mid blocked HID read) each end with deviceRemoved within 100 ms; the link reopens after every replug") {
        let f = try await ManagerFixture()
        defer { f.stop() }
        // The kernel's own view, to tell devif's share of a latency from the VM's.
        let kernel = try KernelRemovals()
        defer { kernel.stop() }
        try Devlab.run(["create", "rs1", "sourcesink", "--vid", "1209", "--pid", "0e01", "--serial", "LAB-RS-1"])
        // No device-side program: reads block until the unplug.
        try Devlab.run(["create", "rh1", "hid", "--vid", "1209", "--pid", "0e02", "--serial", "LAB-RH-1", "--hid-mode", "none"])
        let bulkLink = "usb#vid_1209&pid_0e01#LAB-RS-1#\(LabClasses.vendorBulk)"
        let hidLink = "hid#vid_1209&pid_0e02&mi_00#LAB-RH-1#\(hidClass)"
        let rounds = 50
        var bulk = SurpriseRemovals(kind: "bulk stream")
        var hid = SurpriseRemovals(kind: "blocked HID read")

        try Devlab.plug("rs1")
        let bulkUDC = try pluggedUDC("rs1")
        _ = try await f.next(1, "the SourceSink's arrival", where: { $0.event == .arrival && $0.interface.symbolicLink.rawValue == bulkLink })
        for round in 0..<rounds {
            progress("surprise removal: bulk round \(round)")
            // Opening after a replug is the "same link opens again" check.
            let h = try f.manager.openUSB(bulkLink)
            let inp = try h.endpoints.first { $0.isIn && $0.kind == .bulk }.orFail("round \(round): no bulk IN endpoint")
            let stream = try h.inStream(endpoint: inp.address, transferSize: 16384, transfers: 8)
            var before = 0
            while before < 256 << 10 {
                before += try stream.next(timeout: .seconds(5)).orFail("round \(round): the stream ended before the unplug").count
            }
            let ended = Inbox<(HandleError, ContinuousClock.Instant)>()
            // The stream keeps reading (transfers in flight) up to the unplug.
            Thread {
                while true {
                    do throws(HandleError) {
                        if try stream.next(timeout: .seconds(10)) == nil { ended.post((.io, .now)); return }
                    } catch {
                        ended.post((error, .now))
                        return
                    }
                }
            }.start()
            let kernelSeen = kernel.expect(under: bulkUDC)
            let t0 = try unplugNow("rs1")
            let (error, t1) = try await ended.next(within: 10, "bulk round \(round): the stream to end after the unplug")
            h.close()
            _ = try await f.next(1, within: 30, "bulk round \(round): the removal", where: { $0.event == .removal && $0.interface.symbolicLink.rawValue == bulkLink })
            bulk.record(round: round, error: error, expectedLink: bulkLink, after: t1 - t0, kernel: await kernelSeen.first().map { $0 - t0 })
            try replugNow("rs1", udc: bulkUDC)
            _ = try await f.next(1, within: 30, "bulk round \(round): the arrival after replug", where: { $0.event == .arrival && $0.interface.symbolicLink.rawValue == bulkLink })
        }
        // The 50th unplug's replug: the link opens and data flows.
        do {
            let h = try f.manager.openUSB(bulkLink)
            defer { h.close() }
            let inp = try h.endpoints.first { $0.isIn && $0.kind == .bulk }.orFail("after the last replug: no bulk IN endpoint")
            let stream = try h.inStream(endpoint: inp.address, transferSize: 16384, transfers: 8)
            defer { stream.stop() }
            try expect(try stream.next(timeout: .seconds(5))?.isEmpty == false, "after the last replug: no data from the stream")
        }

        try Devlab.plug("rh1")
        let hidUDC = try pluggedUDC("rh1")
        _ = try await f.next(1, "the HID gadget's arrival", where: { $0.event == .arrival && $0.interface.symbolicLink.rawValue == hidLink })
        for round in 0..<rounds {
            progress("surprise removal: HID round \(round)")
            let h = try f.manager.openHID(hidLink)
            let ended = blockedRead(h)
            // Not synchronisation: a read that returned already would make
            // this round prove nothing, so it counts as a failure.
            try await Task.sleep(for: .milliseconds(100))
            try expect(ended.isEmpty, "HID round \(round): the read returned before the unplug")
            let kernelSeen = kernel.expect(under: hidUDC)
            let t0 = try unplugNow("rh1")
            let (error, t1) = try await ended.next(within: 10, "HID round \(round): the blocked read to end after the unplug")
            h.close()
            _ = try await f.next(1, within: 30, "HID round \(round): the removal", where: { $0.event == .removal && $0.interface.symbolicLink.rawValue == hidLink })
            hid.record(round: round, error: error, expectedLink: hidLink, after: t1 - t0, kernel: await kernelSeen.first().map { $0 - t0 })
            try replugNow("rh1", udc: hidUDC)
            _ = try await f.next(1, within: 30, "HID round \(round): the arrival after replug", where: { $0.event == .arrival && $0.interface.symbolicLink.rawValue == hidLink })
        }
        do {
            let h = try f.manager.openHID(hidLink)
            defer { h.close() }
            try expect(!(try h.reportDescriptor()).isEmpty, "after the last replug: empty report descriptor")
        }
        try expectEqual(f.manager.openHandleCount, 0, "open handles left")

        let all = SurpriseRemovals(kind: "all", latencies: bulk.latencies + hid.latencies,
                                   kernelLatencies: bulk.kernelLatencies + hid.kernelLatencies,
                                   wrongEndings: bulk.wrongEndings + hid.wrongEndings, problems: bulk.problems + hid.problems)
        for s in [bulk, hid, all] { figure(s.summary) }
        try expectEqual(all.latencies.count, 2 * rounds, "unplugs measured")
        try expect(all.problems.isEmpty, "\(all.problems.count) of \(2 * rounds) surprise removals failed: "
                   + all.problems.joined(separator: "; ") + " [\(bulk.summary); \(hid.summary)]")
    }
}

/// A link is one safe path component: parses back to itself, printable
/// ASCII without '/', not "." or "..", at most 255 bytes.
func expectSafeLink(_ link: String) throws {
    do {
        let parsed = try SymbolicLink(parsing: link)
        try expectEqual(parsed.rawValue, link, "the link parsed and rendered again")
    } catch let e as SymbolicLinkParseError {
        throw LabFailure("\(String(reflecting: link)) does not parse: \(e)")
    }
    try expect(link.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") },
               "\(String(reflecting: link)) has a byte that is not printable ASCII, or a '/'")
    try expect(link != "." && link != ".." && !link.isEmpty && link.utf8.count <= 255, "\(String(reflecting: link)) is not a file name")
}

/// A sysfs string attribute (one trailing newline removed), nil if absent.
func sysfsString(_ dir: String?, _ name: String) -> String? {
    guard let dir, var s = try? String(contentsOfFile: dir + "/" + name, encoding: .utf8) else { return nil }
    if s.hasSuffix("\n") { s.removeLast() }
    return s
}

/// Latencies (UDC write to the I/O ending) and what went wrong, per kind of
/// I/O; beside each, when the kernel sent its first remove uevent for the
/// device (the VM's own share: devif cannot learn of it earlier).
struct SurpriseRemovals {
    let kind: String
    var latencies: [Double] = []
    var kernelLatencies: [Double] = []
    var wrongEndings = 0
    var problems: [String] = []

    mutating func record(round: Int, error: HandleError, expectedLink: String, after d: Duration, kernel: Duration?) {
        let latency = milliseconds(d), kernelMs = kernel.map(milliseconds)
        latencies.append(latency)
        if let kernelMs { kernelLatencies.append(kernelMs) }
        if error != .deviceRemoved || error.link != expectedLink {
            wrongEndings += 1
            problems.append("\(kind) \(round): ended with \(error) naming \"\(error.link)\", not deviceRemoved naming the link")
        }
        if latency > 100 {
            problems.append("\(kind) \(round): ended \(String(format: "%.1f", latency)) ms after the unplug (limit 100 ms; the kernel's first remove uevent came after "
                            + (kernelMs.map { String(format: "%.1f ms", $0) } ?? "none seen") + ")")
        }
    }

    /// "KIND: N unplugs to deviceRemoved: median X ms, p95 Y ms, max Z ms; ...".
    var summary: String {
        "surprise removal, \(kind): \(latencies.count) unplugs to deviceRemoved: \(distribution(latencies)); "
            + "kernel's first remove uevent: \(distribution(kernelLatencies)); "
            + "\(latencies.filter { $0 > 100 }.count) over 100 ms, \(wrongEndings) not ended by deviceRemoved, kernel uevent seen for \(kernelLatencies.count)"
    }
}

func milliseconds(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
}

/// "median X ms, p95 Y ms, max Z ms" (nearest-rank percentiles).
func distribution(_ values: [Double]) -> String {
    let s = values.sorted()
    guard !s.isEmpty else { return "no values" }
    func at(_ q: Double) -> String {
        String(format: "%.1f", s[min(max(1, Int((q * Double(s.count)).rounded(.up))), s.count) - 1])
    }
    return "median \(at(0.5)) ms, p95 \(at(0.95)) ms, max \(at(1)) ms"
}

/// Remove uevents straight from the kernel (netlink), timestamped on a
/// thread of their own: the start of the kernel's teardown of a device.
final class KernelRemovals: Sendable {
    /// The inbox of the unplug being watched (one per unplug, so events of
    /// an earlier one are never taken for it).
    private let current = Shared<Inbox<(devpath: String, at: ContinuousClock.Instant)>?>(nil)
    private let stopping = Shared(false)
    private let done = DispatchSemaphore(value: 0)

    init() throws {
        let monitor: KernelUeventMonitor
        do { monitor = try KernelUeventMonitor() } catch { throw LabFailure("kernel uevent socket: \(error)") }
        let current = self.current, stopping = self.stopping, done = self.done
        nonisolated(unsafe) let m = monitor  // used by this thread only from here on
        Thread {
            defer { done.signal() }
            var p = pollfd(fd: m.fileDescriptor, events: Int16(POLLIN), revents: 0)
            while !stopping.withLock({ $0 }) {
                guard poll(&p, 1, 100) > 0 else { continue }
                while let r = try? m.receive() {
                    if case .uevent(let e) = r, e.action == "remove" {
                        let now = ContinuousClock.now
                        current.withLock { $0 }?.post((e.devpath, now))
                    }
                }
            }
        }.start()
    }

    /// Starts watching for the next unplug of the device on `udc`; call
    /// before the unplug.
    func expect(under udc: String) -> Expected {
        let inbox = Inbox<(devpath: String, at: ContinuousClock.Instant)>()
        current.withLock { $0 = inbox }
        // dummy_udc.K pairs with dummy_hcd.K (Lab/guest/README.md).
        return Expected(inbox: inbox, hcd: "/" + udc.replacingOccurrences(of: "dummy_udc", with: "dummy_hcd") + "/")
    }

    struct Expected {
        let inbox: Inbox<(devpath: String, at: ContinuousClock.Instant)>
        let hcd: String
        /// When the first remove uevent below the controller came; nil if
        /// none within 5 s (a figure, not a check).
        func first() async -> ContinuousClock.Instant? {
            let hcd = self.hcd
            return try? await inbox.next(within: 5, "the kernel's remove uevent", where: { $0.devpath.contains(hcd) }).at
        }
    }

    func stop() {
        stopping.withLock { $0 = true }
        done.wait()
    }
}

/// The UDC a devlab gadget is bound to (read from configfs).
func pluggedUDC(_ name: String) throws -> String {
    let path = "/sys/kernel/config/usb_gadget/devlab-\(name)/UDC"
    let udc = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    try expect(!udc.isEmpty, "\(name) is not bound to a UDC")
    return udc
}

/// Binds a gadget again directly (no devlab process per round: a Python start
/// in the VM costs about a second); devlab's state still says "plugged",
/// which is true again once this returns.
func replugNow(_ name: String, udc: String) throws {
    let path = "/sys/kernel/config/usb_gadget/devlab-\(name)/UDC"
    let fd = open(path, O_WRONLY)
    guard fd >= 0 else { throw LabFailure("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let line = udc + "\n"
    guard write(fd, line, line.utf8.count) == line.utf8.count else {
        throw LabFailure("write \(udc) to \(path): \(String(cString: strerror(errno)))")
    }
}

/// hidraw nodes arriving while others leave, as fast as uhid makes them: the
/// storm once crashed the suite inside hidapi 0.13.1's hid_enumerate (a node
/// it had listed left before it read its parent's uevent: strlen(NULL),
/// libusb/hidapi#580), which the HID source called for each arrival. This
/// churn crashed that code in 4 of 6 runs of 1000 devices (hence 3000 here);
/// a bare hid_enumerate loop beside it crashed in 5 runs of 5. It also checks
/// the source's order and bookkeeping under churn. Only the HID source runs,
/// without udevd (so on the kernel's own uevents): udevd in the emulated VM
/// announced these nodes after they had left (0 of 600 devices living about
/// 1 s each reached devif through it) and its workers took the CPU the source
/// needed. It stops udevd, so it runs late in the suite, before the other
/// test without udevd.
func registerHIDChurnTest(_ r: inout LabRunner) {
    // 64 alive at once, 5 ms apart (about 130 devices a second; each lives
    // about 0.5 s): the debug-build source under emulation reads one in ten
    // before it leaves (97 and 123 of 1000 in two runs; 20 ms apart, all of
    // them). That share is a figure, not a requirement.
    let count = 3000, slots = 64, intervalMicroseconds = 5_000
    r.add("reliability: HID arrivals while other HID devices leave (\(count) uhid devices made and destroyed, \(slots) alive at once, \(intervalMicroseconds / 1000) ms apart): nothing crashes, each churn link alternates arrival and removal, none is left present") {
        let pidBase: UInt16 = 0x0e80, churnPIDs = pidBase..<pidBase + UInt16(slots)
        let ours: @Sendable (InterfaceEvent) -> Bool = {
            $0.interface.kind == .hid && $0.interface.vendorId == 0x1209 && churnPIDs.contains($0.interface.productId)
        }
        try await stopUdevd()
        defer { restartUdevd() }
        let notices = Shared([String]())
        let f = try await ManagerFixture(sources: [HIDSource()], onNotice: { n in notices.withLock { $0.append(n) } })
        defer { f.stop() }
        let bin = ProcessInfo.processInfo.environment["DEVLAB_BIN"] ?? Devlab.repo.appendingPathComponent("Lab/.cache/bin").path
        let t0 = ContinuousClock.now
        let churn = try runProcess(bin + "/devlab-uhid-churn", ["--count", "\(count)", "--slots", "\(slots)", "--interval-us", "\(intervalMicroseconds)",
                                                              "--vid", "1209", "--pid", String(format: "%04x", pidBase), "--uniq", "LAB-CH"],
                                   timeout: 600)
        try expectEqual(churn.status, 0, "devlab-uhid-churn's exit status (stderr: \(churn.stderr.prefix(300)))")
        let churnTime = ContinuousClock.now - t0

        // Every churn device is gone now. A sentinel uhid device made after
        // them arrives behind all their events (one HID source thread, one
        // pipeline, both in order): up to it, each link must alternate
        // arrival and removal and end removed.
        try Devlab.run(["create", "chs", "uhid", "--vid", "1209", "--pid", "0e7f", "--serial", "LAB-CH-SENTINEL"])
        try Devlab.plug("chs")
        defer { _ = try? Devlab.run(["remove", "chs"]) }
        let sentinel: @Sendable (InterfaceEvent) -> Bool = { $0.event == .arrival && $0.interface.vendorId == 0x1209 && $0.interface.productId == 0x0e7f }
        var present = Set<String>(), seenLinks = Set<String>(), arrivals = 0, removals = 0
        while true {
            let e = try await f.events.next(within: 60, "the sentinel's arrival behind the churn's events (\(arrivals) arrivals, \(removals) removals so far; "
                                            + "the manager's notices: \(notices.withLock { $0.suffix(5) }))", where: { ours($0) || sentinel($0) })
            if sentinel(e) { break }
            let link = e.interface.symbolicLink.rawValue
            switch e.event {
            case .arrival:
                try expect(present.insert(link).inserted, "a second arrival of \(link) without a removal between (after \(arrivals) arrivals)")
                arrivals += 1
                seenLinks.insert(link)
            case .removal:
                try expect(present.remove(link) != nil, "a removal of \(link), which was not present (after \(removals) removals)")
                removals += 1
            }
        }
        try expect(present.isEmpty, "churn links that arrived and never left: \(present.sorted().prefix(5))")
        try expect(arrivals > 0, "only \(arrivals) of \(count) churn devices were reported (watch overflows: \(f.overflows.value.load(ordering: .relaxed)); "
                   + "the manager's notices: \(notices.withLock { $0.suffix(5) }))")
        let settled = ContinuousClock.now - t0 - churnTime
        let left = f.manager.interfaces(InterfaceFilter(vendorId: 0x1209, kind: .hid)).filter { churnPIDs.contains($0.productId) }
        try expect(left.isEmpty, "churn instances still present after their removals: \(left.map(\.symbolicLink.rawValue))")
        try expectEqual(f.overflows.value.load(ordering: .relaxed), 0, "watch overflows")
        figure("HID churn: \(churn.output.trimmingCharacters(in: .whitespacesAndNewlines)) in \(ms(churnTime)) ms; devif reported \(arrivals) arrivals "
               + "and as many removals on \(seenLinks.count) links (the rest left before they could be read), all delivered \(ms(settled)) ms after the churn ended")
    }
}

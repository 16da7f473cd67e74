// hidapi's path in the lab (issue 17): devif calls hidapi's enumeration only
// from 0.15.0 (`hidapiEnumerationIsSafe`; Debian 12 ships 0.13.1, which
// crashes when a node leaves during it), and then once for every hidraw node
// waiting at that moment, never once per node. The suite runs as built
// (hidapi 0.13.1: devif asks hidapi nothing), and one test runs the HID
// discovery tests again in a child suite on the libhidapi-hidraw 0.15.0 that
// Lab/setup builds into Lab/.cache/hidapi-0.15.0 (devif links hidapi
// dynamically and decides by hid_version() at run time).
import Devif
import DevifCore
import DevifHID
import DevifLinux
import Foundation
import Glibc

/// The hidapi this process runs with: `hid_version()` and the file mapped.
func hidapiInUse() -> (version: String, library: String) {
    // Read to the end: /proc files say they are empty, so a read sized by stat gets nothing.
    let data = (try? FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/maps")).readToEnd()) ?? nil
    let maps = String(decoding: data ?? Data(), as: UTF8.self)
    let library = maps.split(separator: "\n").lazy.compactMap { line -> String? in
        guard let slash = line.firstIndex(of: "/") else { return nil }
        let path = String(line[slash...])
        return path.contains("libhidapi-hidraw") ? path : nil
    }.first
    return (HIDAPIStatistics.version ?? "unknown", library ?? "not mapped")
}

/// The line a child suite prints first, which the parent reads back.
func hidapiFigureLine() -> String {
    let (version, library) = hidapiInUse()
    return "hidapi in this suite: version \(version), library \(library), devif enumerates: \(HIDAPIStatistics.enumerationIsUsed ? "yes" : "no")"
}

/// The tests the 0.15.0 child runs (each part names exactly one test).
let hidapiRerunTests = [
    "stack: hidapi enumerates a HID gadget",
    "stack: hidapi enumerates a uhid device",
    "discovery: a HID gadget arrives and leaves",
    "discovery: a uhid device (virtual bus)",
    "discovery: list --json agrees with sysfs",
    "cli: list --tree",
    "io: hid-monitor follows arrivals and removals",
    "hidapi: a burst of",
    "hidapi: hid_enumerate in a loop",
]

/// `hid_enumerate(vid, 0)` over and over on a thread of its own (under
/// devif's `hidapiLock`: hidapi's error string is not thread-safe) until
/// stopped; counts the calls and the most entries one call listed.
final class EnumerationLoop: Sendable {
    private let counts = Shared((calls: 0, most: 0))
    private let stopping = Shared(false)
    private let done = DispatchSemaphore(value: 0)

    init(vid: UInt16) {
        let counts = self.counts, stopping = self.stopping, done = self.done
        Thread {
            defer { done.signal() }
            while !stopping.withLock({ $0 }) {
                let listed = hidapiLock.withLock { _ in hidEnumerate(vid: vid, pid: 0).count }
                counts.withLock { $0 = ($0.calls + 1, max($0.most, listed)) }
                usleep(1_000)  // pacing, not synchronisation: the lock is not fair, so leave devif's thread a gap to take it
            }
        }.start()
    }

    func stop() -> (calls: Int, most: Int) {
        stopping.withLock { $0 = true }
        done.wait()
        return counts.withLock { $0 }
    }
}

/// A uhid device made by this process with one write to /dev/uhid
/// (UHID_CREATE2), destroyed by `close()`: several made in a loop are
/// plugged as close together as the kernel allows, where `devlab plug` in
/// the emulated VM takes over half a second each (8 uhid plugs in a batch:
/// 5.3 s, their hidraw nodes added over 1.9 s).
final class UHIDDevice {
    private var fd: Int32
    /// `struct uhid_event` (linux/uhid.h, packed): sizeof 4380; create2 at offset 4.
    private static let eventSize = 4380, create2 = UInt32(11)
    /// Vendor page 0xFF00, usage 1, one 8-byte input report (as devlab-uhid-churn).
    private static let descriptor: [UInt8] = [0x06, 0x00, 0xFF, 0x09, 0x01, 0xA1, 0x01, 0x15, 0x00, 0x26, 0xFF, 0x00,
                                              0x75, 0x08, 0x95, 0x08, 0x09, 0x01, 0x81, 0x02, 0xC0]

    /// `bus` 5 is BUS_BLUETOOTH (hidapi lists it), 6 BUS_VIRTUAL (hidapi does not).
    init(name: String, uniq: String, vendor: UInt16, product: UInt16, bus: UInt16 = 5) throws {
        fd = open("/dev/uhid", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw LabFailure("open /dev/uhid: \(String(cString: strerror(errno)))") }
        var event = [UInt8](repeating: 0, count: Self.eventSize)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { event.replaceSubrange(offset..<offset + $0.count, with: $0) }
        }
        func put(_ text: String, at offset: Int, max: Int) {
            let bytes = Array(text.utf8.prefix(max - 1))
            event.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        }
        put(Self.create2, at: 0)
        put(name, at: 4, max: 128)
        put("devif-lab/\(uniq)", at: 132, max: 64)
        put(uniq, at: 196, max: 64)
        put(UInt16(Self.descriptor.count), at: 260)
        put(bus, at: 262)
        put(UInt32(vendor), at: 264)
        put(UInt32(product), at: 268)
        event.replaceSubrange(280..<280 + Self.descriptor.count, with: Self.descriptor)
        let written = event.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == Self.eventSize else {
            let why = written < 0 ? String(cString: strerror(errno)) : "short write (\(written))"
            close()
            throw LabFailure("UHID_CREATE2 for \(name): \(why)")
        }
    }

    /// Destroys the device (closing /dev/uhid does). Idempotent.
    func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}

/// Timestamps of the kernel's hidraw add uevents, taken on a thread of its own.
final class HidrawAdds: Sendable {
    private let times = Shared([ContinuousClock.Instant]())
    private let stopping = Shared(false)
    private let done = DispatchSemaphore(value: 0)

    init() throws {
        let monitor: KernelUeventMonitor
        do { monitor = try KernelUeventMonitor(subsystems: ["hidraw"]) } catch { throw LabFailure("kernel uevent socket: \(error)") }
        let times = self.times, stopping = self.stopping, done = self.done
        nonisolated(unsafe) let m = monitor  // used by this thread only from here on
        Thread {
            defer { done.signal() }
            var p = pollfd(fd: m.fileDescriptor, events: Int16(POLLIN), revents: 0)
            while !stopping.withLock({ $0 }) {
                guard poll(&p, 1, 50) > 0 else { continue }
                while let r = try? m.receive() {
                    if case .uevent(let e) = r, e.action == "add" {
                        let now = ContinuousClock.now
                        times.withLock { $0.append(now) }
                    }
                }
            }
        }.start()
    }

    /// How many adds came, and the time from the first to the last.
    func summary() -> (count: Int, spread: Duration) {
        times.withLock { t in (t.count, (t.last ?? .now) - (t.first ?? .now)) }
    }

    func stop() {
        stopping.withLock { $0 = true }
        done.wait()
    }
}

func registerHIDAPITests(_ r: inout LabRunner) {
    // uhid devices that say they are on Bluetooth: hidapi lists them (not
    // BUS_VIRTUAL ones), takes their strings from the kernel (HID_NAME,
    // HID_UNIQ) and devif uses hidapi's; 8 at once, more than usb_f_hid's 4,
    // made by this process in one loop (see UHIDDevice).
    let k = 8
    r.add("hidapi: a burst of \(k) HID devices (uhid on the Bluetooth bus, made in one loop) plugged at once: with hidapi 0.15.0 devif makes at most \(k / 2) enumerations for the \(k) nodes and reports each with hidapi's entry and strings; below 0.15.0 it makes none; all \(k) removals follow") {
        let pids = (0..<k).map { UInt16(0x0e40 + $0) }
        let f = try await ManagerFixture(filter: InterfaceFilter(classGuid: hidClass, vendorId: 0x1209), sources: [HIDSource()])
        defer { f.stop() }
        let adds = try HidrawAdds()
        defer { adds.stop() }
        let (enumerations0, answered0, time0) = (HIDAPIStatistics.enumerations, HIDAPIStatistics.nodesAnswered, HIDAPIStatistics.enumerationTime)
        var devices: [UHIDDevice] = []
        defer { devices.forEach { $0.close() } }
        let start = ContinuousClock.now
        for (i, pid) in pids.enumerated() {
            devices.append(try UHIDDevice(name: "Burst HID \(i)", uniq: "LAB-HB-\(i)", vendor: 0x1209, product: pid))
        }
        let batchTime = ContinuousClock.now - start
        let ours = Set(pids)
        let arrivals = try await f.next(k, within: 60, "arrivals of the burst") {
            $0.event == .arrival && ours.contains($0.interface.productId)
        }
        let lastArrival = ContinuousClock.now - start
        // The source counts before it reports, so these cover the whole burst.
        let enumerations = HIDAPIStatistics.enumerations - enumerations0
        let answered = HIDAPIStatistics.nodesAnswered - answered0
        let enumerationTime = HIDAPIStatistics.enumerationTime - time0
        let (added, spread) = adds.summary()

        try expectEqual(Set(arrivals.map(\.interface.productId)), ours, "nodes reported")
        for (i, pid) in pids.enumerated() {
            let e = try arrivals.first { $0.interface.productId == pid }.orFail("no arrival of 1209:\(hex(pid))")
            try expectEqual(e.interface.product, "Burst HID \(i)", "product of 1209:\(hex(pid))")
            try expectEqual(e.interface.serialNumber, "LAB-HB-\(i)", "serial of 1209:\(hex(pid))")
            // hidapi's own entry for the node (the suite asks it directly; devif is idle now).
            let listed = hidEnumerate(vid: 0x1209, pid: pid)
            try expectEqual(listed.count, 1, "hidapi's entries for 1209:\(hex(pid))")
            try expectEqual(listed[0].path, e.interface.devnode ?? "", "hidapi's path for 1209:\(hex(pid)) against devif's devnode")
            try expectEqual(listed[0].product, e.interface.product, "hidapi's product string for 1209:\(hex(pid)) against devif's")
            try expectEqual(listed[0].serial, e.interface.serialNumber, "hidapi's serial for 1209:\(hex(pid)) against devif's")
        }
        let version = HIDAPIStatistics.version ?? "unknown"
        figure("hidapi \(version) burst: \(k) hidraw nodes, \(enumerations) hid_enumerate calls by devif (\(ms(enumerationTime)) ms in all), \(answered) nodes reported with hidapi's entry; "
               + "the kernel added \(added) hidraw nodes over \(ms(spread)) ms (made in \(ms(batchTime)) ms), the last arrival \(ms(lastArrival)) ms after the first was made")
        if HIDAPIStatistics.enumerationIsUsed {
            try expect(enumerations >= 1, "hidapi \(version): devif made no enumeration for the burst")
            try expect(enumerations <= k / 2, "hidapi \(version): \(enumerations) enumerations for \(k) nodes (at most \(k / 2) expected; "
                       + "the kernel added them over \(ms(spread)) ms)")
            try expectEqual(answered, k, "nodes reported with hidapi's entry")
        } else {
            try expectEqual(enumerations, 0, "hidapi \(version) (below 0.15.0): enumerations by devif")
            try expectEqual(answered, 0, "hidapi \(version) (below 0.15.0): nodes answered by hidapi")
        }
        devices.forEach { $0.close() }
        let removals = try await f.next(k, within: 60, "removals of the burst") {
            $0.event == .removal && ours.contains($0.interface.productId)
        }
        try expectEqual(Set(removals.map(\.interface.symbolicLink.rawValue)), Set(arrivals.map(\.interface.symbolicLink.rawValue)), "removed links")
    }

    // In the 0.15.0 child only: hidapi 0.13.1's enumeration crashes beside
    // such a churn (README, Reliability: 5 runs of 5), which is why devif
    // never calls it below 0.15.0. Here the suite enumerates in a loop and
    // devif's HID source enumerates for two Bluetooth devices plugged
    // meanwhile, while hidraw nodes come and go; udevd runs.
    if CommandLine.arguments.contains("--child") {
        let count = 300, slots = 16, intervalMicroseconds = 10_000
        r.add("hidapi: hid_enumerate in a loop and devif's HID source beside a churn of \(count) uhid devices (\(slots) alive at once, \(intervalMicroseconds / 1000) ms apart) while 2 Bluetooth HID devices arrive: nothing crashes, devif reports both with hidapi's entry") {
            let version = HIDAPIStatistics.version ?? "unknown"
            try expect(HIDAPIStatistics.enumerationIsUsed, "hidapi \(version) is below 0.15.0, whose enumeration crashes here; this test is for the 0.15.0 child")
            let pids: [UInt16] = [0x0e50, 0x0e51]
            for (i, pid) in pids.enumerated() {
                try Devlab.run(["create", "hc\(i)", "uhid", "--vid", "1209", "--pid", hex(pid), "--serial", "LAB-HC-\(i)",
                                "--product", "Churn-time HID \(i)", "--bus", "bluetooth"])
            }
            let f = try await ManagerFixture(filter: InterfaceFilter(classGuid: hidClass, vendorId: 0x1209), sources: [HIDSource()])
            defer { f.stop() }
            let (enumerations0, answered0) = (HIDAPIStatistics.enumerations, HIDAPIStatistics.nodesAnswered)
            let bin = ProcessInfo.processInfo.environment["DEVLAB_BIN"] ?? Devlab.repo.appendingPathComponent("Lab/.cache/bin").path
            let loop = EnumerationLoop(vid: 0x1209)
            // On a thread of its own: the churn must not hold one of the two
            // cooperative threads the test's waits need.
            let churned = Shared<Result<ProcessResult, any Error>?>(nil)
            let churnDone = DispatchSemaphore(value: 0)
            Thread {
                let r = Result { try runProcess(bin + "/devlab-uhid-churn", ["--count", "\(count)", "--slots", "\(slots)",
                                                                            "--interval-us", "\(intervalMicroseconds)", "--vid", "1209",
                                                                            "--pid", "0e90", "--uniq", "LAB-HCH"], timeout: 300) }
                churned.withLock { $0 = r }
                churnDone.signal()
            }.start()
            try Devlab.batch(pids.indices.map { "plug hc\($0)" })
            let ours = Set(pids)
            let arrivals = try await f.next(2, within: 90, "arrivals of the 2 Bluetooth devices") {
                $0.event == .arrival && ours.contains($0.interface.productId)
            }
            churnDone.wait()
            let (calls, most) = loop.stop()
            let result = try churned.withLock { $0 }.orFail("no churn result").get()
            try expectEqual(result.status, 0, "devlab-uhid-churn's exit status (stderr: \(result.stderr.prefix(300)))")
            try expect(calls > 0, "the enumeration loop never ran")
            for (i, pid) in pids.enumerated() {
                let e = try arrivals.first { $0.interface.productId == pid }.orFail("no arrival of 1209:\(hex(pid))")
                try expectEqual(e.interface.product, "Churn-time HID \(i)", "product of 1209:\(hex(pid))")
            }
            let enumerations = HIDAPIStatistics.enumerations - enumerations0
            let answered = HIDAPIStatistics.nodesAnswered - answered0
            try expect(enumerations >= 1, "devif made no enumeration")
            try expect(answered >= pids.count, "\(answered) nodes reported with hidapi's entry, expected at least \(pids.count)")
            figure("hidapi \(version) beside a churn (\(result.output.trimmingCharacters(in: .whitespacesAndNewlines))): \(calls) hid_enumerate calls by the suite "
                   + "(at most \(most) entries of 1209), \(enumerations) by devif, \(answered) nodes answered by hidapi; no crash")
        }
    }

    r.add("hidapi 0.15.0: the HID discovery tests again in a child suite with devif on libhidapi-hidraw 0.15.0 (Lab/.cache/hidapi-0.15.0, built by Lab/setup); every one passes and the child really ran 0.15.0") {
        let folder = Devlab.repo.appendingPathComponent("Lab/.cache/hidapi-0.15.0").path
        try expect(FileManager.default.fileExists(atPath: folder + "/libhidapi-hidraw.so.0"),
                   "no \(folder)/libhidapi-hidraw.so.0 (Lab/setup builds it)")
        // This very executable, even if .build was rebuilt since it started
        // (a rebuild meanwhile once gave the child a half-linked file: SIGSEGV).
        let start = ContinuousClock.now
        let child = try runProcess("/proc/self/exe", ["--child", "--filter", hidapiRerunTests.joined(separator: "|")],
                                   environment: ["LD_LIBRARY_PATH": folder], timeout: 840)
        let lines = child.output.split(separator: "\n").map(String.init)
        for line in lines where line.hasPrefix("PASS ") || line.hasPrefix("FAIL ") || line.hasPrefix("figure: ") {
            print("  [hidapi 0.15.0 child] \(line)")
        }
        let header = try lines.first { $0.hasPrefix("figure: hidapi in this suite: ") }
            .orFail("the child printed no hidapi line (exit or signal \(child.status); stderr: \(child.stderr.suffix(500)))")
        try expect(header.contains("version 0.15.0,"), "the child did not run hidapi 0.15.0: \(header)")
        try expect(header.contains("library \(folder)/libhidapi-hidraw.so.0,"), "the child mapped another hidapi: \(header)")
        try expect(header.hasSuffix("devif enumerates: yes"), "devif in the child does not use hidapi's enumeration: \(header)")
        let failed = lines.filter { $0.hasPrefix("FAIL ") }
        try expect(failed.isEmpty, "failed in the child: \(failed.joined(separator: "; "))")
        for name in hidapiRerunTests {
            let passes = lines.filter { $0.hasPrefix("PASS \(name)") }.count
            try expectEqual(passes, 1, "PASS lines of \"\(name)...\" in the child")
        }
        let closing = try lines.last { $0.range(of: #"^[0-9]+ passed, [0-9]+ failed$"#, options: .regularExpression) != nil }
            .orFail("the child printed no closing line (exit \(child.status))")
        try expectEqual(closing, "\(hidapiRerunTests.count) passed, 0 failed", "the child's closing line")
        try expectEqual(child.status, 0, "the child's exit status")
        figure("hidapi 0.15.0 child: \(closing) in \(ms(ContinuousClock.now - start)) ms; \(header.dropFirst("figure: ".count))")
    }
}

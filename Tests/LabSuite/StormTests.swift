// The storm (issue 9, item 1): 32 gadgets plugged and unplugged at random as
// fast as the kernel takes them, while four subscribers record every event
// and a thread opens, uses and closes handles on whatever is present. Then
// each subscriber's record is checked against the storm's own log, and
// `list` against sysfs.
import CLibUSB
import Devif
import DevifCore
import Foundation
import Glibc
import Synchronization

func registerStormTests(_ r: inout LabRunner) {
    let env = ProcessInfo.processInfo.environment
    let operations = env["DEVIF_STORM_OPS"].flatMap { Int($0) } ?? 2000
    let seed = env["DEVIF_STORM_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
    r.add("reliability: storm of \(operations) random plugs and unplugs on 32 gadgets (28 Loopback, 4 HID) with handles opened and closed throughout: four subscribers each see every plug as one arrival and one removal per link, in order, nothing lost or duplicated; list equals sysfs after") {
        try await runStorm(operations: operations, seed: seed)
    }
    r.add("discovery: a burst of 24 gadgets plugged at once: each is reported ready (none marked as left before ready) and its removal follows the unplug; devif's arrival after libusb's own callback is printed") {
        try await runBurst(count: 24)
    }
}

/// 24 Loopback gadgets plugged in one devlab batch, then unplugged in one:
/// every device arrives ready and leaves; the lag after libusb's own hotplug
/// callback (a context of the test's) is the figure issue 17 names.
private func runBurst(count: Int) async throws {
    // The test's libusb context first: libusb (1.0.26) puts a new context
    // at the head of its list and reads a new device's sysfs once per
    // context in that order, so the context made last reads first. Made
    // after the manager's, it read each device before devif's context did,
    // and a device gone in between counted as one devif missed.
    let libusb = try LibUSBView()
    let f = try await ManagerFixture()
    defer { f.stop() }
    let log = EventLog("burst watch")
    let watch = f.manager.watch(InterfaceFilter(vendorId: 0x1209, productId: burstPID))
    let pump = Task { for await u in watch.updates { log.record(u) } }
    defer { watch.cancel(); pump.cancel() }
    let names = (0..<count).map { String(format: "bu%02d", $0) }
    try Devlab.batch(names.enumerated().map { k, name in
        "create \(name) loopback --vid 1209 --pid \(hex(burstPID)) --serial \(String(format: "BURST-%02d", k))"
    })
    let plugged = Date()
    try Devlab.batch(names.enumerated().map { k, name in "plug \(name) --udc dummy_udc.\(k)" })
    let isDevice: @Sendable (EventLog.Entry) -> Bool = { $0.classGuid == usbDeviceClass }
    try await log.wait(within: 120, "\(count) usb-device arrivals") { $0.filter { isDevice($0) && $0.arrival }.count >= count }
    let arrivals = log.entries.filter { isDevice($0) && $0.arrival }
    try expectEqual(arrivals.count, count, "usb-device arrivals (\(arrivals.map(\.link)))")
    let marked = arrivals.filter(\.leftBeforeReady)
    try expect(marked.isEmpty, "\(marked.count) devices that stayed plugged were marked as left before ready: \(marked.map(\.link).prefix(4))")
    try expectEqual(Set(arrivals.map(\.link)).count, count, "distinct links")
    // The test's callback runs on its own context's event thread, which
    // the scheduler may run after devif has already published: wait for it.
    let keys = arrivals.map { e in (e.devnode ?? "").split(separator: "/").suffix(2).compactMap { Int($0) } }
        .map { $0.count == 2 ? "\($0[0])/\($0[1])" : "?" }
    try? await libusb.arrivals.wait(within: 10, "libusb's callbacks for devif's \(count) arrivals") { seen in
        keys.allSatisfy { seen[$0] != nil }
    }
    let callbacks = libusb.arrivals.value
    var lag: [Double] = []
    for (e, key) in zip(arrivals, keys) {
        guard let t = callbacks[key] else { continue }
        lag.append(e.time.timeIntervalSince(t) * 1000)
    }
    try expectEqual(lag.count, count, "arrivals matched to libusb's callbacks by bus/address")
    let spread = (callbacks.values.max() ?? plugged).timeIntervalSince(callbacks.values.min() ?? plugged) * 1000
    figure("burst: \(count) gadgets plugged at once (libusb's callbacks spread over \(Int(spread)) ms): devif's usb-device arrival after libusb's own callback: \(distribution(lag))")
    try Devlab.batch(names.map { "unplug \($0)" })
    try await log.wait(within: 120, "\(count) usb-device removals") { $0.filter { isDevice($0) && !$0.arrival }.count >= count }
    for link in Set(arrivals.map(\.link)) {
        let events = log.entries.filter { $0.link == link }.map(\.arrival)
        try expectEqual(events, [true, false], "\(link): arrival then removal")
    }
}

private let burstPID: UInt16 = 0x0e43

private let loopbackPID: UInt16 = 0x0e40
private let hidPID: UInt16 = 0x0e41

/// One gadget of the storm, pinned to its own controller.
private struct StormGadget: Sendable {
    let index: Int
    let name: String
    let serial: String
    let isHID: Bool
    let udc: String
    /// The device's sysfs directory while plugged (`.../dummy_hcd.K/usbN/N-1`).
    let device: String
    var configUDC: String { "/sys/kernel/config/usb_gadget/devlab-\(name)/UDC" }
    /// The instances one plug makes: usb-device and the lab's vendor bulk
    /// class for a Loopback; usb-device, the lab's HID interface class and
    /// hid for a HID gadget.
    var instanceCount: Int { isHID ? 3 : 2 }

    /// The kernel has finished the plug: configured, and a HID gadget's
    /// hidraw node made.
    func plugDone() -> Bool {
        guard let value = sysfsString(device, "bConfigurationValue"), !value.isEmpty else { return false }
        guard isHID else { return true }
        let interface = device + "/" + (device as NSString).lastPathComponent + ":1.0"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: interface)) ?? [] where entry.hasPrefix("0003:") {
            if !((try? FileManager.default.contentsOfDirectory(atPath: "\(interface)/\(entry)/hidraw")) ?? []).isEmpty { return true }
        }
        return false
    }

    /// The kernel has finished the unplug: the device is gone from sysfs.
    func unplugDone() -> Bool { access(device, F_OK) != 0 }

    /// The device number of the present device (its usbfs node's name).
    func devnum() -> Int? { sysfsString(device, "devnum").flatMap { Int($0) } }

    /// The present HID device's name below interface 0.
    func hidName() -> String? {
        let interface = device + "/" + (device as NSString).lastPathComponent + ":1.0"
        return ((try? FileManager.default.contentsOfDirectory(atPath: interface)) ?? []).first { $0.hasPrefix("0003:") }
    }
}

/// One plug period of a gadget in the storm's own log.
private struct Period: Sendable {
    var plugged: Date
    var unplugged: Date?
    /// Who the device was in this period, read before the unplug: the
    /// kernel's device number and, for HID, its HID device's name
    /// (`0003:1209:0E41.000C`, numbered anew at every plug).
    var devnum: Int?
    var hidName: String?
}

/// A value threads change and one task waits on until a condition holds:
/// the condition is checked at each change, never by polling.
private final class Watched<Value: Sendable>: Sendable {
    private struct Waiter {
        let predicate: @Sendable (Value) -> Bool
        let continuation: CheckedContinuation<Void, Never>
    }
    private struct State {
        var value: Value
        var waiter: Waiter?
    }
    private let state: Mutex<State>
    init(_ value: Value) { state = Mutex(State(value: value)) }

    var value: Value { state.withLock { $0.value } }

    func update(_ body: (inout Value) -> Void) {
        let ready = state.withLock { s -> Waiter? in
            body(&s.value)
            guard let w = s.waiter, w.predicate(s.value) else { return nil }
            s.waiter = nil
            return w
        }
        ready?.continuation.resume()
    }

    /// Returns once `predicate` holds; fails naming `what` after `seconds`.
    func wait(within seconds: Double, _ what: String, until predicate: @escaping @Sendable (Value) -> Bool) async throws {
        _ = try await withDeadline(seconds, what) { [self] in
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { s -> Bool in
                        if predicate(s.value) || Task.isCancelled { return true }
                        s.waiter = Waiter(predicate: predicate, continuation: c)
                        return false
                    }
                    if now { c.resume() }
                }
            } onCancel: {
                let w = state.withLock { s in defer { s.waiter = nil }; return s.waiter }
                w?.continuation.resume()
            }
            return true
        }
    }
}

/// Every event one subscriber received, in order.
private final class EventLog: Sendable {
    struct Entry: Sendable, Equatable {
        let seq: UInt64
        let arrival: Bool
        let link: String
        let classGuid: GUID
        let devnode: String?
        let sysfsPath: String?
        let time: Date
        let leftBeforeReady: Bool
    }
    private struct State {
        var entries: [Entry] = []
        var overflows: UInt64 = 0
    }
    let name: String
    private let state = Watched(State())
    init(_ name: String) { self.name = name }

    func record(_ e: InterfaceEvent) {
        let entry = Entry(seq: e.seq, arrival: e.event == .arrival, link: e.interface.symbolicLink.rawValue,
                          classGuid: e.interface.classGuid, devnode: e.interface.devnode,
                          sysfsPath: e.interface.snapshot?.sysfsPath, time: e.time,
                          leftBeforeReady: e.interface.leftBeforeReady)
        state.update { $0.entries.append(entry) }
    }

    func record(_ update: WatchUpdate) {
        switch update {
        case .event(let e): record(e)
        case .overflow(let missed): state.update { $0.overflows += missed }
        }
    }

    var entries: [Entry] { state.value.entries }
    var overflows: UInt64 { state.value.overflows }

    /// Returns once `predicate` holds for the entries so far.
    func wait(within seconds: Double, _ what: String, until predicate: @escaping @Sendable ([Entry]) -> Bool) async throws {
        try await state.wait(within: seconds, "\(name): \(what)") { predicate($0.entries) }
    }
}

/// What the handle thread saw, by outcome.
private final class HandleTally: Sendable {
    let counts = Mutex<[String: Int]>([:])
    let unexpected = Mutex<[String]>([])
    /// The three slowest uses: how long, which link, what came of it.
    let slowest = Mutex<[(Duration, String)]>([])

    func count(_ outcome: String) { counts.withLock { $0[outcome, default: 0] += 1 } }

    func record(_ outcome: String, link: String, took d: Duration) {
        count(outcome)
        slowest.withLock { s in
            s.append((d, "\(link) \(outcome)"))
            s.sort { $0.0 > $1.0 }
            if s.count > 3 { s.removeLast() }
        }
    }
}

/// Opens `i`, does one request, closes; the outcome's name. The device may
/// leave at any moment: its absence is an expected outcome, anything else
/// goes to `tally.unexpected`.
private func useOnce(_ manager: DeviceManager, _ i: DeviceInterface, _ tally: HandleTally) -> String {
    do throws(HandleError) {
        switch i.kind {
        case .usb:
            let h = try manager.openUSB(i.symbolicLink.rawValue)
            defer { h.close() }
            let d = try h.controlIn(.getDescriptor(type: 1), length: 18, timeout: .seconds(2))
            if d.count != 18 { tally.unexpected.withLock { $0.append("\(i.symbolicLink.rawValue): device descriptor of \(d.count) bytes") } }
        case .hid:
            let h = try manager.openHID(i.symbolicLink.rawValue)
            defer { h.close() }
            if try h.reportDescriptor().isEmpty { tally.unexpected.withLock { $0.append("\(i.symbolicLink.rawValue): empty report descriptor") } }
        }
        return "used"
    } catch {
        if error == .deviceRemoved { return "deviceRemoved" }
        if error == .notPresent { return "notPresent" }
        tally.unexpected.withLock { $0.append("\(i.symbolicLink.rawValue): \(error)") }
        return "other"
    }
}

private func runStorm(operations: Int, seed: UInt64) async throws {
    // The test's libusb context first: libusb (1.0.26) puts a new context
    // at the head of its list and reads a new device's sysfs once per
    // context in that order, so the context made last reads first. Made
    // after the manager's, it read each device before devif's context did,
    // and a device gone in between counted as one devif missed.
    let libusb = try LibUSBView()
    let f = try await ManagerFixture()
    defer { f.stop() }
    let manager = f.manager
    figure("storm: seed \(seed) (DEVIF_STORM_SEED=\(seed) repeats the same choices), \(operations) operations")

    // Four subscribers, all before the first plug: two watches read as fast
    // as they can, a callback, and a slow watch; one more sees hid only.
    let fast = EventLog("watch"), callback = EventLog("callback"), slow = EventLog("slow watch"), hidOnly = EventLog("hid watch")
    let fastWatch = manager.watch(), slowWatch = manager.watch(), hidWatch = manager.watch(InterfaceFilter(classGuid: hidClass))
    let pumps = [
        Task { for await u in fastWatch.updates { fast.record(u) } },
        Task {
            var n = 0
            for await u in slowWatch.updates {
                slow.record(u)
                n += 1
                // A subscriber that falls behind: it must lose nothing
                // (its queue holds 4096) and hold nobody else up.
                if n % 64 == 0 { try? await Task.sleep(for: .milliseconds(20)) }
            }
        },
        Task { for await u in hidWatch.updates { hidOnly.record(u) } },
    ]
    let token = manager.onChange { callback.record($0) }
    defer {
        token.cancel()
        for w in [fastWatch, slowWatch, hidWatch] { w.cancel() }
        for p in pumps { p.cancel() }
    }
    let snapshotSeq = fastWatch.snapshotEvents.map(\.seq).max() ?? 0

    // 32 gadgets, each on its own controller: 28 Loopback and 4 HID (the
    // kernel's usb_f_hid allows 4 at once; no device-side program, so
    // nothing to restart between plugs).
    let gadgets: [StormGadget] = try (0..<32).map { k in
        let hcd = "/sys/devices/platform/dummy_hcd.\(k)"
        let bus = try ((try? FileManager.default.contentsOfDirectory(atPath: hcd)) ?? [])
            .first { $0.hasPrefix("usb") && Int($0.dropFirst(3)) != nil }.orFail("no root hub under \(hcd)")
        let n = bus.dropFirst(3)
        return StormGadget(index: k, name: String(format: "st%02d", k), serial: String(format: "STORM-%02d", k),
                           isHID: k % 8 == 7, udc: "dummy_udc.\(k)", device: "\(hcd)/\(bus)/\(n)-1")
    }
    let pace = try UdevPace(gadgets: gadgets.count)
    defer { pace.stop() }
    try await pace.started()
    for g in gadgets { pace.expect(g.index, g.isHID ? [.bind, .hidrawAdd] : [.bind]) }
    var lines = gadgets.map { g in
        "create \(g.name) " + (g.isHID ? "hid --vid 1209 --pid \(hex(hidPID)) --serial \(g.serial) --hid-mode none"
                                       : "loopback --vid 1209 --pid \(hex(loopbackPID)) --serial \(g.serial)")
    }
    lines += gadgets.map { "plug \($0.name) --udc \($0.udc)" }
    let start = Date()
    try Devlab.batch(lines)
    let expectedInstances = gadgets.map(\.instanceCount).reduce(0, +)
    let isStorm: @Sendable (EventLog.Entry) -> Bool = { $0.link.contains("#STORM-") }
    try await fast.wait(within: 120, "arrivals of the 32 gadgets' \(expectedInstances) instances") { entries in
        entries.filter { isStorm($0) && $0.arrival }.count >= expectedInstances
    }
    // Each gadget's links, from its first plug: what every later plug must bring back.
    var linksOf: [Int: Set<String>] = [:]
    for e in fast.entries where isStorm(e) {
        guard let g = gadgets.first(where: { e.link.contains("#\($0.serial)#") }) else { continue }
        linksOf[g.index, default: []].insert(e.link)
    }
    for g in gadgets {
        try expectEqual(linksOf[g.index]?.count ?? 0, g.instanceCount, "instances of \(g.name) after its first plug (\(linksOf[g.index]?.sorted() ?? []))")
        try expect(g.plugDone(), "\(g.name): the kernel has not finished its first plug")
    }
    // udevd told devif; the monitor's line may still be on its way.
    try await pace.waitAllCaughtUp(within: 30, "udevadm monitor to show the first plugs")

    // Handles: one thread opens a random present storm instance, does one
    // request, closes, all through the storm.
    let tally = HandleTally()
    let stopHandles = StopFlag()
    let handlesDone = DispatchSemaphore(value: 0)
    Thread {
        defer { handlesDone.signal() }
        while !stopHandles.value.load(ordering: .acquiring) {
            let present = manager.interfaces(InterfaceFilter(vendorId: 0x1209)).filter { $0.symbolicLink.rawValue.contains("#STORM-") }
            guard let i = present.randomElement() else { tally.count("nothing present"); usleep(1000); continue }
            let began = ContinuousClock.now
            let outcome = useOnce(manager, i, tally)
            tally.record(outcome, link: i.symbolicLink.rawValue, took: ContinuousClock.now - began)
        }
    }.start()

    // The storm: a seeded choice of gadget; an operation is issued as soon
    // as the kernel has finished that gadget's previous one and udevd has
    // announced it (nothing waits for devif). Runs on a thread of its own:
    // UDC writes block.
    let stormStart = ContinuousClock.now
    let stormResult: Result<(ops: [[Period]], idleWaits: Int), LabFailure> = await withCheckedContinuation { c in
        Thread {
            var log: [[Period]] = gadgets.map { _ in [Period(plugged: start)] }
            var rng = StormRandom(seed: seed)
            var plugged = Array(repeating: true, count: gadgets.count)
            var idle = 0, done = 0
            while done < operations {
                var picked: Int?
                for _ in 0..<64 {
                    let k = Int(rng.next() % UInt64(gadgets.count))
                    if pace.caughtUp(k), plugged[k] ? gadgets[k].plugDone() : gadgets[k].unplugDone() { picked = k; break }
                }
                guard let k = picked else {
                    // Every gadget is mid-operation in the kernel or udevd.
                    idle += 1
                    if idle > 60_000 { c.resume(returning: .failure(LabFailure("the kernel and udevd finished no plug or unplug for 60 s"))); return }
                    usleep(1000)
                    continue
                }
                let g = gadgets[k]
                if plugged[k] {
                    log[k][log[k].count - 1].devnum = g.devnum()
                    if g.isHID { log[k][log[k].count - 1].hidName = g.hidName() }
                }
                let now = Date()
                pace.expect(k, plugged[k] ? (g.isHID ? [.remove, .hidrawRemove] : [.remove]) : (g.isHID ? [.bind, .hidrawAdd] : [.bind]))
                let fd = open(g.configUDC, O_WRONLY)
                let line = plugged[k] ? "\n" : g.udc + "\n"
                let wrote = fd >= 0 ? write(fd, line, line.utf8.count) : -1
                let err = errno
                if fd >= 0 { close(fd) }
                guard wrote == line.utf8.count else {
                    c.resume(returning: .failure(LabFailure("operation \(done): writing \(line.debugDescription) to \(g.configUDC): \(String(cString: strerror(err)))")))
                    return
                }
                if plugged[k] { log[k][log[k].count - 1].unplugged = now } else { log[k].append(Period(plugged: now)) }
                plugged[k].toggle()
                done += 1
                if done % 200 == 0 { progress("storm: \(done) operations") }
            }
            c.resume(returning: .success((log, idle)))
        }.start()
    }
    let (periods, idleWaits) = try stormResult.get()
    let stormTime = ContinuousClock.now - stormStart
    stopHandles.value.store(true, ordering: .releasing)
    handlesDone.wait()

    // The last operations finish; then every subscriber must reach the final state: each plugged gadget's links present, the rest absent.
    let pluggedAtEnd = Set(gadgets.indices.filter { periods[$0].last!.unplugged == nil })
    // udevd announces an operation after the kernel has finished it.
    try await pace.waitAllCaughtUp(within: 120, "udevd to announce the storm's last operations")
    for g in gadgets {
        try expect(pluggedAtEnd.contains(g.index) ? g.plugDone() : g.unplugDone(), "\(g.name): the kernel has not finished its last operation, though udevd announced it")
    }
    // devif learns of USB devices through udevd (libusb's hotplug), which
    // works through the storm's events at its own pace; it must have caught up.
    let udevStart = ContinuousClock.now
    let settle = try runProcess("/usr/bin/udevadm", ["settle", "--timeout=240"], timeout: 260)
    try expectEqual(settle.status, 0, "udevadm settle after the storm (stderr: \(settle.stderr))")
    let udevLag = ContinuousClock.now - udevStart
    let finalLinks = Set(pluggedAtEnd.flatMap { linksOf[$0]! })
    let allLinks = Set(linksOf.values.flatMap { $0 })
    let settled: @Sendable (Set<String>) -> @Sendable ([EventLog.Entry]) -> Bool = { links in
        { entries in
            var last: [String: Bool] = [:]
            for e in entries where links.contains(e.link) { last[e.link] = e.arrival }
            return links.allSatisfy { (last[$0] ?? false) == finalLinks.contains($0) }
        }
    }
    let hidLinks = Set(allLinks.filter { $0.hasPrefix("hid#") })
    var problems: [String] = []
    for (log, links) in [(fast, allLinks), (callback, allLinks), (slow, allLinks), (hidOnly, hidLinks)] {
        do {
            try await log.wait(within: 60, "the final state after the storm", until: settled(links))
        } catch {
            // Say which links are wrong, then check everything else too.
            var last: [String: EventLog.Entry] = [:]
            for e in log.entries where links.contains(e.link) { last[e.link] = e }
            let wrong = links.filter { (last[$0]?.arrival ?? false) != finalLinks.contains($0) }.sorted().map { link in
                "\(link) (plugged \(finalLinks.contains(link)), last event \(last[link].map { "\($0.arrival ? "arrival" : "removal") seq \($0.seq)" } ?? "none"), "
                    + "present in the manager \(manager.interface(link: link)?.present ?? false))"
            }
            problems.append("\(error): \(wrong.count) links not in their final state: \(wrong.prefix(8).joined(separator: "; "))")
            if problems.count == 1 { dumpThreads("storm-threads.txt") }
        }
    }

    // 1. The subscribers agree with each other: the same events in the same order.
    let reference = fast.entries.filter { $0.seq > snapshotSeq }
    for log in [callback, slow] {
        let mine = log.entries.filter { $0.seq > snapshotSeq }
        if mine != reference {
            let k = zip(mine, reference).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(mine.count, reference.count)
            problems.append("\(log.name): \(mine.count) events differ from the watch's \(reference.count) from event \(k)")
        }
    }
    let hidReference = reference.filter { $0.classGuid == hidClass }
    let hidMine = hidOnly.entries.filter { $0.seq > snapshotSeq }
    if hidMine != hidReference { problems.append("hid watch: \(hidMine.count) events differ from the watch's \(hidReference.count) hid events") }
    for log in [fast, callback, slow, hidOnly] where log.overflows > 0 {
        problems.append("\(log.name): told of \(log.overflows) missed events")
    }
    // Nothing published was lost on the way: the sequence numbers have no gap.
    for (a, b) in zip(reference, reference.dropFirst()) where b.seq != a.seq + 1 {
        problems.append("watch: sequence jumps from \(a.seq) to \(b.seq)")
    }

    // 2. Against the storm's log, per link: each plug period either brought
    // one arrival and later one removal (after the unplug), or nothing (the
    // device was gone before it could be read); never one without the other,
    // never two, never out of order.
    var pairs = 0, skipped: [Double] = [], identified = 0, arrivalLatencies: [Double] = []
    for g in gadgets {
        let ps = periods[g.index]
        for link in linksOf[g.index]!.sorted() {
            let events = reference.filter { $0.link == link }
            var lastPeriod = -1
            var open: (period: Int, entry: EventLog.Entry)?
            var reported = Set<Int>()
            for e in events {
                if let o = open {
                    guard !e.arrival else { problems.append("\(link): two arrivals (seq \(o.entry.seq), \(e.seq)) without a removal"); break }
                    if let end = ps[o.period].unplugged, e.time >= end {
                        pairs += 1
                        arrivalLatencies.append(o.entry.time.timeIntervalSince(ps[o.period].plugged) * 1000)
                        reported.insert(o.period)
                    } else {
                        problems.append("\(link): removal (seq \(e.seq)) before the unplug of plug period \(o.period)")
                    }
                    open = nil
                } else {
                    guard e.arrival else { problems.append("\(link): removal (seq \(e.seq)) without an arrival"); break }
                    // Which plug it belongs to, by the device's identity (devif may
                    // publish a plug's arrival after the next plug has begun).
                    let last = ps.count - 1
                    let p: Int?
                    if link.hasPrefix("usb#") {
                        let devnum = e.devnode.flatMap { Int($0.split(separator: "/").last ?? "") }
                        p = ps.indices.first { k in (ps[k].devnum ?? (k == last ? g.devnum() : nil)) == devnum }
                    } else {
                        let name = e.sysfsPath?.split(separator: "/").first { $0.hasPrefix("0003:") }.map(String.init)
                        p = ps.indices.first { k in (ps[k].hidName ?? (k == last ? g.hidName() : nil)) == name }
                    }
                    guard let p else {
                        problems.append("\(link): arrival (seq \(e.seq), \(e.devnode ?? "-"), \(e.sysfsPath ?? "-")) matches no plug period's device"); break
                    }
                    identified += 1
                    if e.time < ps[p].plugged { problems.append("\(link): arrival (seq \(e.seq)) published before its plug") }
                    if p <= lastPeriod { problems.append("\(link): arrival (seq \(e.seq)) for plug period \(p) after one for period \(lastPeriod)") }
                    lastPeriod = p
                    open = (p, e)
                }
            }
            // The last period of a gadget still plugged is open: its arrival stands alone.
            if let o = open {
                if o.period != ps.count - 1 || ps[o.period].unplugged != nil {
                    problems.append("\(link): no removal for the arrival of plug period \(o.period)")
                }
                reported.insert(o.period)
            } else if ps.last!.unplugged == nil {
                problems.append("\(link): plugged at the end, but its last event is not an arrival")
            }
            for (p, period) in ps.enumerated() where !reported.contains(p) {
                skipped.append((period.unplugged ?? Date()).timeIntervalSince(period.plugged) * 1000)
            }
        }
    }

    // devif against libusb's own callbacks (usb-device instances on the
    // storm's buses, by bus/address): every device libusb saw is reported,
    // ready or marked as left before it was ready.
    let stormBuses = Set(gadgets.compactMap { g in Int(g.device.split(separator: "/").last!.split(separator: "-").first!) })
    let libusbArrivals = libusb.arrivals.value
    var devifLag: [Double] = [], notFromLibUSB = 0, leftBeforeReady = 0
    var devifReported = Set<String>()
    for e in reference where e.arrival && e.classGuid == usbDeviceClass {
        guard let node = e.devnode else { continue }
        let parts = node.split(separator: "/").suffix(2).compactMap { Int($0) }
        guard parts.count == 2, stormBuses.contains(parts[0]) else { continue }
        let key = "\(parts[0])/\(parts[1])"
        devifReported.insert(key)
        if e.leftBeforeReady { leftBeforeReady += 1 }
        if let t = libusbArrivals[key] { devifLag.append(e.time.timeIntervalSince(t) * 1000) } else { notFromLibUSB += 1 }
    }
    let libusbStorm = libusbArrivals.keys.filter { stormBuses.contains(Int($0.split(separator: "/")[0]) ?? -1) }
    let libusbOnly = libusbStorm.filter { !devifReported.contains($0) }.count
    if libusbOnly * 100 > libusbStorm.count {
        problems.append("devif reported \(libusbStorm.count - libusbOnly) of the \(libusbStorm.count) storm devices libusb's callback saw "
                        + "(\(libusbOnly) missed; at most 1% may be)")
    }

    // A storm device named without its serial was read after it had left:
    // allowed only when marked so, and then it too comes and goes in turn.
    let nameless = reference.filter { e in
        !isStorm(e) && (e.link.contains("vid_1209&pid_\(hex(loopbackPID))") || e.link.contains("vid_1209&pid_\(hex(hidPID))"))
    }
    let unmarked = Set(nameless.filter { $0.arrival && !$0.leftBeforeReady }.map(\.link))
    if !unmarked.isEmpty { problems.append("\(unmarked.count) storm instances named without their serial, not marked as left before ready: \(unmarked.sorted().prefix(4))") }
    for (link, events) in Dictionary(grouping: nameless, by: \.link) {
        for (k, e) in events.enumerated() where e.arrival != (k % 2 == 0) {
            problems.append("\(link): event \(k) (seq \(e.seq)) is \(e.arrival ? "an arrival" : "a removal") out of turn"); break
        }
        if events.count % 2 != 0 { problems.append("\(link): an arrival marked as left before ready without its removal") }
    }

    // 3. The manager's present set and `list` (a new process) against sysfs.
    let present = Set(manager.interfaces(InterfaceFilter(vendorId: 0x1209)).map(\.symbolicLink.rawValue).filter { $0.contains("#STORM-") })
    if present != finalLinks {
        problems.append("manager: present \(present.subtracting(finalLinks).sorted()) not expected, \(finalLinks.subtracting(present).sorted()) missing")
    }
    try expectListAgreesWithSysfs(registry: "/tmp/devif-lab-\(UUID().uuidString).sqlite", "after the storm")
    let truthStorm = sysfsUSBDevices().filter { $0.contains(" STORM-") }.count
    if truthStorm != pluggedAtEnd.count { problems.append("sysfs has \(truthStorm) storm devices, the storm left \(pluggedAtEnd.count) plugged") }

    // 4. Handles: every use ended in success or in the device's absence.
    let counts = tally.counts.withLock { $0 }
    let unexpected = tally.unexpected.withLock { $0 }
    problems += unexpected.prefix(10).map { "handle: \($0)" }
    if manager.openHandleCount != 0 { problems.append("\(manager.openHandleCount) handles left open") }

    let plugs = periods.map { $0.count - 1 }.reduce(0, +)
    let seconds = milliseconds(stormTime) / 1000
    figure(String(format: "storm: %d operations (%d plugs, %d unplugs) on 32 gadgets in %.1f s (%.1f operations/s; %d waits of 1 ms with every gadget mid-operation in the kernel or udevd), %d gadgets plugged at the end",
                  operations, plugs, operations - plugs, seconds, Double(operations) / seconds, idleWaits, pluggedAtEnd.count))
    figure("storm: \(reference.count) events per subscriber (watch, callback, slow watch identical; hid watch \(hidMine.count)); "
           + "\(pairs) arrival+removal pairs matched to plug periods, each of the \(identified) arrivals matched to its plug period by the device's number (USB) or HID device name (hid); "
           + "\(skipped.count) link-periods with neither (device gone before it was read): lengths \(distribution(skipped))")
    figure("storm: plug to arrival (publish time) of the reported pairs: \(distribution(arrivalLatencies))")
    figure("storm: libusb's own hotplug callback (a context of the test's) saw \(libusbStorm.count) storm device arrivals; devif published \(devifReported.count) usb-device arrivals "
           + "(\(leftBeforeReady) marked as left before ready; \(notFromLibUSB) unseen by that callback), \(libusbOnly) seen by libusb only "
           + String(format: "(devif reported %.1f%%)", libusbStorm.isEmpty ? 100 : 100 * Double(libusbStorm.count - libusbOnly) / Double(libusbStorm.count))
           + "; devif's usb-device arrival after libusb's callback: \(distribution(devifLag))")
    figure(String(format: "storm: udevadm settle returned after %.1f s once udevd had announced the last operation", milliseconds(udevLag) / 1000))
    figure("storm: slowest handle uses: \(tally.slowest.withLock { $0 }.map { "\(ms($0.0)) ms \($0.1)" }.joined(separator: "; "))")
    figure("storm: handles \(counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")); \(unexpected.count) unexpected")
    try expect(problems.isEmpty, "\(problems.count) problems: " + problems.prefix(20).joined(separator: "; "))
    try expect((counts["used"] ?? 0) > 0, "the handle thread never completed a request")
}

/// Every thread's stack (gdb), into $LAB_RESULTS/NAME: what a stuck
/// pipeline is waiting for.
func dumpThreads(_ name: String) {
    guard let dir = ProcessInfo.processInfo.environment["LAB_RESULTS"] else { return }
    let r = try? runProcess("/usr/bin/gdb", ["-p", String(getpid()), "-batch", "-ex", "thread apply all bt 40"], timeout: 120)
    let text = (r?.output ?? "") + "\n" + (r?.stderr ?? "gdb did not run")
    _ = FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(text.utf8))
    figure("storm: thread stacks in \(dir)/\(name)")
}

/// libusb's own hotplug arrivals of the storm's devices, timed, from a
/// context of the test's own: the layer under devif's USB source, to tell
/// devif's share of a late arrival from the VM's.
private final class LibUSBView: @unchecked Sendable {  // the callback only touches `arrivals`
    private let usb: RawUSB
    private var handle: libusb_hotplug_callback_handle = 0
    /// "bus/address" -> when libusb called back.
    let arrivals = Watched<[String: Date]>([:])

    init() throws {
        usb = try RawUSB()
        let rc = libusb_hotplug_register_callback(
            usb.ctx, Int32(LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED.rawValue), 0, 0x1209, LIBUSB_HOTPLUG_MATCH_ANY,
            LIBUSB_HOTPLUG_MATCH_ANY, { _, dev, _, user in
                let now = Date()
                let view = Unmanaged<LibUSBView>.fromOpaque(user!).takeUnretainedValue()
                let key = "\(libusb_get_bus_number(dev))/\(libusb_get_device_address(dev))"
                view.arrivals.update { $0[key] = now }
                return 0
            }, Unmanaged.passUnretained(self).toOpaque(), &handle)
        guard rc == 0 else { throw LabFailure("libusb_hotplug_register_callback failed: \(rc)") }
        usb.startEventThread()
    }

    deinit { libusb_hotplug_deregister_callback(usb.ctx, handle) }
}

/// What udevd has announced per gadget, from `udevadm monitor`: the storm
/// issues a gadget's next operation only once udevd has announced its last
/// one, as it announces it to libusb (devif's USB source) and to devif's HID
/// source. The kernel goes faster than udevd in the emulated VM (thousands
/// of events queued within a minute), so pacing by the kernel alone tests
/// udevd's backlog rather than devif.
private final class UdevPace: Sendable {
    enum Need: Hashable { case bind, remove, hidrawAdd, hidrawRemove }
    private let needs: Watched<[Set<Need>]>
    private let ready = Inbox<Bool>()
    private let process = Process()

    init(gadgets: Int) throws {
        needs = Watched(Array(repeating: [], count: gadgets))
        process.executableURL = URL(fileURLWithPath: "/usr/bin/stdbuf")
        process.arguments = ["-oL", "/usr/bin/udevadm", "monitor", "--udev", "--subsystem-match=usb", "--subsystem-match=hidraw"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let needs = self.needs, ready = self.ready
        forEachLine(of: out.fileHandleForReading) { data in
            // "UDEV  [12.345678] bind     /devices/platform/dummy_hcd.3/usb4/4-1 (usb)"
            let line = String(decoding: data, as: UTF8.self)
            if line.hasPrefix("UDEV - ") { ready.post(true); return }
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 5, f[0] == "UDEV", let hcd = f[3].range(of: "/dummy_hcd.") else { return }
            let rest = f[3][hcd.upperBound...]
            guard let k = Int(rest.prefix { $0.isNumber }) else { return }
            let isDevice = f[3].split(separator: "/").last.map { !$0.contains(":") && $0.hasSuffix("-1") } ?? false
            let seen: Need? = switch (f[4], f[2]) {
            case ("(usb)", "bind") where isDevice: .bind
            case ("(usb)", "remove") where isDevice: .remove
            case ("(hidraw)", "add"): .hidrawAdd
            case ("(hidraw)", "remove"): .hidrawRemove
            default: nil
            }
            if let seen { needs.update { if k < $0.count { $0[k].remove(seen) } } }
        }
    }

    /// Returns once the monitor listens (its header is printed after).
    func started() async throws { _ = try await ready.next(within: 20, "udevadm monitor to start") }

    /// Call before the operation: what udevd must announce before the next.
    func expect(_ gadget: Int, _ what: Set<Need>) { needs.update { $0[gadget] = what } }

    /// udevd has announced everything of the gadget's last operation.
    func caughtUp(_ gadget: Int) -> Bool { needs.value[gadget].isEmpty }

    /// Returns once udevd has announced every gadget's last operation.
    func waitAllCaughtUp(within seconds: Double, _ what: String) async throws {
        try await needs.wait(within: seconds, what) { $0.allSatisfy(\.isEmpty) }
    }

    func stop() { if process.isRunning { process.terminate() } }
}

private final class StopFlag: Sendable { let value = Atomic<Bool>(false) }

/// SplitMix64, so a seed repeats a storm's choices.
private struct StormRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

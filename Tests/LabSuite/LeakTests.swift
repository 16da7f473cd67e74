// Leaks in the lab (issue 9 item 6): open/close 10,000 times and plug/unplug
// 1,000 times in one running manager; afterwards the process's open file
// descriptors and threads are exactly where they were after a warm-up, its
// RSS is back within a stated tolerance, and no handle is left open.
//
// The counts the issue asks for (10,000 and 1,000) took 5 and 12 minutes in
// the emulated VM on a loaded 2-core host (an open/close cycle 30 ms on
// average, 73 ms on the USB HID gadget; a round of 10 plugs and unplugs 7 s),
// so CI runs fewer:
// DEVIF_LEAK_CYCLES (open/close cycles after the warm-up, default 3000) and
// DEVIF_LEAK_ROUNDS (rounds of 10 plug+unplug operations after the warm-up,
// default 10); Lab/test hands them to the VM:
//   DEVIF_LEAK_CYCLES=10000 DEVIF_LEAK_ROUNDS=100 Lab/test --lab-only --filter "reliability: leaks"
import Devif
import DevifCore
import DevifHID
import Foundation
import Glibc

@_silgen_name("malloc_trim") private func mallocTrim(_ pad: Int) -> Int32
@_silgen_name("sqlite3_memory_used") private func sqliteMemoryUsed() -> Int64
@_silgen_name("malloc_info") private func mallocInfo(_ options: Int32, _ stream: UnsafeMutablePointer<FILE>) -> Int32

func registerLeakTests(_ r: inout LabRunner) {
    let cycles = leakCount("DEVIF_LEAK_CYCLES", 3_000)
    let rounds = leakCount("DEVIF_LEAK_ROUNDS", 10)

    r.add("reliability: leaks: \(cycles) open/close cycles (USB: sync and async control, bulk, streams; HID gadget and uhid: descriptor, echo, input report subscriptions) leave fds and threads exactly as after a 200-cycle warm-up, heap within 512 KiB and RSS within 8 MiB (SQLite's bounded cache aside), no handle open") {
        let f = try await ManagerFixture()
        defer { f.stop() }
        try Devlab.run(["create", "lk1", "loopback", "--vid", "1209", "--pid", "0e41", "--serial", "LAB-LK-1"])
        try Devlab.run(["create", "lk2", "hid", "--vid", "1209", "--pid", "0e42", "--serial", "LAB-LK-2"])
        try Devlab.run(["create", "lk3", "uhid", "--vid", "1209", "--pid", "0e43", "--serial", "LAB-LK-3"])
        for name in ["lk1", "lk2", "lk3"] { try Devlab.plug(name) }
        // The Loopback's interface instance (claimed at open: each open and
        // close is a usbfs bind and unbind) for bulk and streams, its device
        // instance (nothing claimed) for control transfers.
        let usbLink = "usb#vid_1209&pid_0e41#LAB-LK-1#\(LabClasses.vendorBulk)"
        let usbDeviceLink = "usb#vid_1209&pid_0e41#LAB-LK-1#\(usbDeviceClass)"
        let gadgetLink = "hid#vid_1209&pid_0e42&mi_00#LAB-LK-2#\(hidClass)"
        _ = try await f.next(1, within: 60, "the loopback's arrival", where: { $0.event == .arrival && $0.interface.symbolicLink.rawValue == usbLink })
        _ = try await f.next(1, within: 60, "the loopback's device arrival", where: { $0.event == .arrival && $0.interface.symbolicLink.rawValue == usbDeviceLink })
        _ = try await f.next(1, within: 60, "the HID gadget's arrival", where: { $0.event == .arrival && $0.interface.symbolicLink.rawValue == gadgetLink })
        let uhidLink = try await f.next(1, within: 60, "the uhid device's arrival", where: {
            $0.event == .arrival && $0.interface.productId == 0x0e43 && $0.interface.kind == .hid
        })[0].interface.symbolicLink.rawValue

        let probe = try f.manager.openUSB(usbLink)
        let out = try probe.endpoints.first { !$0.isIn && $0.kind == .bulk }.orFail("no bulk OUT endpoint in \(probe.endpoints)").address
        let inp = try probe.endpoints.first { $0.isIn && $0.kind == .bulk }.orFail("no bulk IN endpoint in \(probe.endpoints)").address
        probe.close()

        var tally = OpenCloseTally()
        let warmUp = 200
        var baseline = ProcessUsage.zero
        var samples: [String] = []
        let start = ContinuousClock.now
        var measuredFrom = start
        for i in 0..<(warmUp + cycles) {
            if i == warmUp {
                baseline = try await ProcessUsage.settled()
                measuredFrom = .now
                samples.append("0: \(baseline)")
            }
            // Half USB, a quarter each HID gadget and uhid.
            let t = ContinuousClock.now
            switch i % 4 {
            case 0, 2: try await usbCycle(f.manager, interface: usbLink, device: usbDeviceLink, out: out, in: inp, i / 2, &tally)
            case 1: try await hidCycle(f.manager, gadgetLink, i / 4, &tally)
            default: try await hidCycle(f.manager, uhidLink, i / 4, &tally)
            }
            if i >= warmUp { tally.time[i % 4 == 3 ? 2 : i % 4 == 1 ? 1 : 0] += ContinuousClock.now - t }
            let done = i + 1 - warmUp
            if done > 0, done % 1000 == 0 {
                progress("leaks: \(done) of \(cycles) open/close cycles")
                samples.append("\(done): \(ProcessUsage.now())")
            }
        }
        let elapsed = ContinuousClock.now - measuredFrom
        try expectEqual(f.manager.openHandleCount, 0, "open handles after \(cycles) cycles")
        let (end, settle) = try await ProcessUsage.settled(towards: baseline)
        figure("leaks, open/close: \(cycles) cycles after a \(warmUp)-cycle warm-up (\(tally)) in \(String(format: "%.1f", milliseconds(elapsed) / 1000)) s "
               + "(\(String(format: "%.2f", milliseconds(elapsed) / Double(cycles))) ms a cycle); after the warm-up \(baseline), at the end \(end) "
               + "(settled in \(ms(settle)) ms); RSS \(end.rssDelta(from: baseline)); every 1000: \(samples.joined(separator: "; "))")
        try end.expectBack(to: baseline, "after \(cycles) open/close cycles")
    }

    r.add("reliability: leaks: \(rounds * 10) plug/unplug operations (\(rounds) rounds of 4 HID gadgets and 6 Loopback/SourceSink gadgets, handles opened on some, some kept open through the unplug) each give their arrivals and removals, and leave fds and threads exactly as after a warm-up (devif's assembly pool within the devices plugged at once), heap within 512 KiB and RSS within 8 MiB besides SQLite's bounded page cache") {
        // The manager keeps every notice it was given (to replay them to a
        // later onNotice handler): counted, as a possible growth per plug.
        let notices = Shared((count: 0, bytes: 0, last: ""))
        let f = try await ManagerFixture(onNotice: { n in notices.withLock { $0.count += 1; $0.bytes += n.utf8.count; $0.last = n } })
        defer { f.stop() }
        // At most 4 HID gadget functions exist at once (Lab/guest/README.md).
        let devices: [PlugDevice] = (0..<10).map { k in
            PlugDevice(name: "lp\(k)", type: k < 4 ? "hid" : (k < 7 ? "loopback" : "sourcesink"),
                       pid: UInt16(0x0e50 + k), serial: "LAB-LP-\(k)")
        }
        var lines: [String] = []
        for d in devices {
            // No device-side program: an unplug by UDC write would take its /dev/hidgN away.
            lines.append("create \(d.name) \(d.type) --vid 1209 --pid \(String(format: "%04x", d.pid)) --serial \(d.serial)"
                         + (d.type == "hid" ? " --hid-mode none" : ""))
        }
        for d in devices { lines.append("plug \(d.name)") }
        try Devlab.batch(lines)
        let udcs = try devices.map { try pluggedUDC($0.name) }
        let pids = Set(devices.map(\.pid))
        let ours: @Sendable (InterfaceEvent) -> Bool = { $0.interface.vendorId == 0x1209 && pids.contains($0.interface.productId) }

        // The first arrivals name every instance: a HID gadget has 3 (usb
        // device, the lab's HID-interface class, hid), the others 2 (usb
        // device, the lab's vendor class).
        let expected = devices.map { $0.type == "hid" ? 3 : 2 }.reduce(0, +)
        let first = try await f.next(expected, within: 120, "the first arrivals", where: { ours($0) })
        for e in first { try expectEqual(e.event, .arrival, "the first event of \(e.interface.symbolicLink.rawValue)") }
        let links = Set(first.map(\.interface.symbolicLink.rawValue))
        try expectEqual(links.count, expected, "distinct links among the first arrivals \(first.map(\.interface.symbolicLink.rawValue))")
        let hidLinks = devices.prefix(4).map { "hid#vid_1209&pid_\(String(format: "%04x", $0.pid))&mi_00#\($0.serial)#\(hidClass)" }
        let bulkLinks = devices.dropFirst(4).map { "usb#vid_1209&pid_\(String(format: "%04x", $0.pid))#\($0.serial)#\(LabClasses.vendorBulk)" }
        let gadgetDeviceLinks = devices.prefix(4).map { "usb#vid_1209&pid_\(String(format: "%04x", $0.pid))#\($0.serial)#\(usbDeviceClass)" }
        for l in hidLinks + bulkLinks + gadgetDeviceLinks { try expect(links.contains(l), "\(l) not among the arrivals \(links.sorted())") }

        let warmUp = 5
        var baseline = ProcessUsage.zero
        var samples: [String] = []
        var tally = PlugTally()
        var measuredFrom = ContinuousClock.now
        var plugTimes: [Double] = [], unplugTimes: [Double] = []
        for round in 0..<(warmUp + rounds) {
            if round > 0 {
                let t0 = ContinuousClock.now
                for (d, udc) in zip(devices, udcs) { try replugNow(d.name, udc: udc) }
                try await expectEvents(f, .arrival, links, round: round, where: ours)
                plugTimes.append(milliseconds(.now - t0))
            }
            if round == warmUp {
                // Measured from the state every round returns to: all plugged.
                baseline = try await ProcessUsage.settled()
                measuredFrom = .now
                samples.append("0: \(baseline)")
            }
            progress("leaks: plug round \(round)")
            // Handles on two devices a round, rotating; on odd rounds they stay
            // open (the HID one with a running reader thread) through the unplug.
            let hidLink = hidLinks[round % hidLinks.count], bulkLink = bulkLinks[round % bulkLinks.count]
            let keep = round % 2 == 1
            let hid = try f.manager.openHID(hidLink)
            try expect(!(try hid.reportDescriptor()).isEmpty, "round \(round): empty report descriptor from \(hidLink)")
            let usb = try f.manager.openUSB(bulkLink)
            try expectEqual(Array(try deviceDescriptor(usb)[8...9]), [0x09, 0x12], "round \(round): idVendor from \(bulkLink)")
            let gadgetDevice = try f.manager.openUSB(gadgetDeviceLinks[round % gadgetDeviceLinks.count])
            _ = try await gadgetDevice.controlIn(.getStatus(), length: 2)
            gadgetDevice.close()
            tally.handles += 3
            var ending: Task<HandleError?, Never>?
            if keep {
                let subscription = hid.inputReports(capacity: 8)
                ending = Task {
                    for await d in subscription { if case .event(.ended(let e)) = d { return e } }
                    return nil
                }
                tally.keptOpen += 2
            } else {
                hid.close()
                usb.close()
            }
            let t1 = try devices.map { try unplugNow($0.name) }.first!
            try await expectEvents(f, .removal, links, round: round, where: ours)
            unplugTimes.append(milliseconds(.now - t1))
            if keep {
                let task = try ending.orFail("round \(round): no stream task")
                let end = try await withDeadline(10, "round \(round): the HID stream to end after the unplug") { await task.value }
                try expect(end == .deviceRemoved, "round \(round): the HID stream ended with \(String(describing: end)), not deviceRemoved")
                do {
                    _ = try deviceDescriptor(usb)
                    throw LabFailure("round \(round): a control transfer on a removed device succeeded")
                } catch let e as HandleError {
                    try expect(e == .deviceRemoved, "round \(round): a control transfer on a removed device failed with \(e)")
                }
                hid.close()
                usb.close()
            }
            if round >= warmUp { tally.operations += devices.count }
            let done = round + 1 - warmUp
            if done > 0, done % 10 == 0 { samples.append("\(done * devices.count): \(ProcessUsage.now())") }
        }
        // Back to the state the baseline was taken in: all plugged.
        for (d, udc) in zip(devices, udcs) { try replugNow(d.name, udc: udc) }
        try await expectEvents(f, .arrival, links, round: warmUp + rounds, where: ours)
        let elapsed = ContinuousClock.now - measuredFrom
        try expectEqual(f.manager.openHandleCount, 0, "open handles after the rounds")
        let (end, settle) = try await ProcessUsage.settled(towards: baseline)
        // Nothing more than the expected events: no duplicates queued.
        try await Task.sleep(for: .milliseconds(500))
        try expect(f.events.isEmpty, "events left over after the rounds (duplicates?)")
        try expectEqual(f.overflows.value.load(ordering: .relaxed), 0, "watch overflows")
        figure("leaks, plug/unplug: \(tally.operations) plug+unplug operations (\(rounds) rounds of \(devices.count) devices, \(links.count) instances a round: "
               + "\(tally.operations / devices.count * links.count) arrivals and as many removals, each seen once) after a \(warmUp)-round warm-up, "
               + "\(tally.handles) handles opened, \(tally.keptOpen) kept open through an unplug; \(String(format: "%.1f", milliseconds(elapsed) / 1000)) s "
               + "(\(String(format: "%.0f", milliseconds(elapsed) / Double(max(1, rounds)))) ms a round); after the warm-up \(baseline), at the end \(end) "
               + "(settled in \(ms(settle)) ms); RSS \(end.rssDelta(from: baseline)); every 100: \(samples.joined(separator: "; ")); "
               + "UDC writes of a round to its last arrival: \(distribution(plugTimes)); to its last removal: \(distribution(unplugTimes)); "
               + "notices: \(notices.withLock { "\($0.count), \($0.bytes) bytes, the last: \($0.last.prefix(300))" })")
        try end.expectBack(to: baseline, "after \(tally.operations) plug/unplug operations", assemblyPeak: devices.count)
    }
}

/// A count from the environment, else the default (what CI runs).
private func leakCount(_ name: String, _ fallback: Int) -> Int {
    ProcessInfo.processInfo.environment[name].flatMap { Int($0) }.map { max(1, $0) } ?? fallback
}

private struct PlugDevice {
    let name: String, type: String, pid: UInt16, serial: String
}

private struct PlugTally {
    var operations = 0, handles = 0, keptOpen = 0
}

/// Takes this round's events of our devices: exactly one `event` for each
/// link (any order); another event, a duplicate or a missing one fails.
private func expectEvents(_ f: ManagerFixture, _ event: InterfaceEvent.Kind, _ links: Set<String>, round: Int,
                          where ours: @escaping @Sendable (InterfaceEvent) -> Bool) async throws {
    var missing = links
    while !missing.isEmpty {
        let e = try await f.events.next(within: 60, "round \(round): \(event)s (\(missing.count) of \(links.count) missing: \(missing.sorted().prefix(3))...)", where: ours)
        let link = e.interface.symbolicLink.rawValue
        guard e.event == event, missing.remove(link) != nil else {
            throw LabFailure("round \(round): \(e.event) of \(link) while waiting for the \(event)s of \(missing.sorted())")
        }
    }
}

private struct OpenCloseTally: CustomStringConvertible {
    var usbSyncControl = 0, usbAsyncControl = 0, usbBulk = 0, usbStreams = 0, usbNoticeStreams = 0
    var hidDescriptor = 0, hidEcho = 0, hidAsyncSubscriptions = 0, hidCancelledSubscriptions = 0
    /// Time spent in the measured cycles: USB, HID gadget, uhid.
    var time: [Duration] = [.zero, .zero, .zero]
    var description: String {
        "USB \(usbSyncControl + usbAsyncControl + usbBulk + usbStreams + usbNoticeStreams): \(usbSyncControl) sync control, \(usbAsyncControl) async control, "
            + "\(usbBulk) bulk write+read, \(usbStreams) started-and-stopped streams, \(usbNoticeStreams) sync control with a removal notice stream ended by close; HID \(hidDescriptor + hidEcho + hidAsyncSubscriptions + hidCancelledSubscriptions): "
            + "\(hidDescriptor) descriptor reads, \(hidEcho) echoes, \(hidAsyncSubscriptions) subscriptions and \(hidCancelledSubscriptions) with a second subscriber cancelled (reader thread started and stopped); "
            + "time in the cycles: USB \(String(format: "%.1f", milliseconds(time[0]) / 1000)) s, HID gadget \(String(format: "%.1f", milliseconds(time[1]) / 1000)) s, uhid \(String(format: "%.1f", milliseconds(time[2]) / 1000)) s"
    }
}

/// One open, one piece of I/O, one close on the Loopback gadget.
private func usbCycle(_ manager: DeviceManager, interface: String, device: String, out: EndpointAddress, in inp: EndpointAddress, _ j: Int,
                      _ tally: inout OpenCloseTally) async throws {
    let h = try manager.openUSB(j % 10 == 6 || j % 10 == 9 ? interface : device)
    defer { h.close() }
    if j % 20 == 9 {
        // The async event thread: a stream started, fed and stopped. Not a
        // multiple of the packet size: the Loopback's OUT request completes
        // on the short packet.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: j &+ $0) }
        try expectEqual(try syncWrite(h, out, data), 1000, "cycle \(j): bulk write before the stream")
        let stream = try h.inStream(endpoint: inp, transferSize: 4096, transfers: 2, timeout: .seconds(5))
        defer { stream.stop() }
        try expectEqual(try await stream.next(), data, "cycle \(j): the stream's data")
        tally.usbStreams += 1
    } else if j % 10 == 1 {
        // A removal notice stream, taken before close (half) or after it:
        // close ends it, with no notice (the device stayed).
        let before = j % 20 == 1 ? h.removalNotices() : nil
        try expectEqual(Array(try deviceDescriptor(h)[8...11]), [0x09, 0x12, 0x41, 0x0e], "cycle \(j): idVendor/idProduct")
        h.close()
        let stream = before ?? h.removalNotices()
        let got = try await withDeadline(5, "cycle \(j): the removal notice stream taken \(before == nil ? "after" : "before") close to end") {
            var got: [RemovalNotice] = []
            for await n in stream { got.append(n) }
            return got
        }
        try expectEqual(got, [], "cycle \(j): removal notices of a closed handle")
        tally.usbNoticeStreams += 1
    } else if j % 10 == 3 {
        let dd = try await h.controlIn(.getDescriptor(type: 1), length: 18)
        try expectEqual(Array(dd[8...11]), [0x09, 0x12, 0x41, 0x0e], "cycle \(j): idVendor/idProduct (async)")
        tally.usbAsyncControl += 1
    } else if j % 10 == 6 {
        let data = (0..<64).map { UInt8(truncatingIfNeeded: j &* 3 &+ $0) }
        try expectEqual(try syncWrite(h, out, data), 64, "cycle \(j): bulk write")
        try expectEqual(try syncRead(h, inp), data, "cycle \(j): bulk read back")
        tally.usbBulk += 1
    } else {
        try expectEqual(Array(try deviceDescriptor(h)[8...11]), [0x09, 0x12, 0x41, 0x0e], "cycle \(j): idVendor/idProduct")
        tally.usbSyncControl += 1
    }
}

// Synchronous forms (from a synchronous function, the sync overloads are chosen).
private func syncWrite(_ h: USBHandle, _ ep: EndpointAddress, _ data: [UInt8]) throws -> Int { try h.write(endpoint: ep, data) }
private func syncRead(_ h: USBHandle, _ ep: EndpointAddress) throws -> [UInt8] { try h.read(endpoint: ep, length: 4096, timeout: .seconds(5)) }

/// One open, one piece of I/O, one close on a HID device (gadget or uhid).
private func hidCycle(_ manager: DeviceManager, _ link: String, _ j: Int, _ tally: inout OpenCloseTally) async throws {
    let h = try manager.openHID(link)
    defer { h.close() }
    let payload = reportPayload(j)
    switch j % 10 {
    case 2:
        try h.write(outputReport: [0] + payload)
        try expectEqual(try h.read(timeout: .seconds(5)), payload, "\(link) cycle \(j): echo")
        tally.hidEcho += 1
    case 5:
        // The first subscription starts the reader thread; close stops it.
        let subscription = h.inputReports(capacity: 8)
        let got = Inbox<[UInt8]>()
        let reading = Task {
            var ended: HandleError?
            for await d in subscription {
                switch d {
                case .event(.report(let r)): got.post(r.array)
                case .event(.ended(let e)): ended = e
                default: break
                }
            }
            return ended
        }
        try h.write(outputReport: [0] + payload)
        try expectEqual(try await got.next(within: 5, "\(link) cycle \(j): the subscribed report"), payload, "\(link) cycle \(j): subscribed report")
        h.close()
        let end = try await withDeadline(5, "\(link) cycle \(j): the stream to end after close") { await reading.value }
        try expect(end == .closed, "\(link) cycle \(j): the stream ended with \(String(describing: end)), not closed")
        tally.hidAsyncSubscriptions += 1
    case 8:
        // Two subscribers; one leaves (cancel) before the report, the other
        // gets it; close ends the stream and the reader thread.
        let leaving = h.inputReports(capacity: 8)
        let subscription = h.inputReports(capacity: 8)
        leaving.cancel()
        let got = Inbox<[UInt8]>()
        let reading = Task {
            var events = 0
            for await d in subscription {
                events += 1
                if case .event(.report(let r)) = d { got.post(r.array) }
            }
            return events
        }
        try h.write(outputReport: [0] + payload)
        try expectEqual(try await got.next(within: 5, "\(link) cycle \(j): the second subscriber's report"), payload, "\(link) cycle \(j): second subscriber's report")
        h.close()
        let events = try await withDeadline(5, "\(link) cycle \(j): the stream to end after close") { await reading.value }
        try expectEqual(events, 2, "\(link) cycle \(j): events (the report and the end)")
        var left = 0
        for await _ in leaving { left += 1 }
        try expectEqual(left, 0, "\(link) cycle \(j): events after cancel")
        tally.hidCancelledSubscriptions += 1
    default:
        try expect(!(try h.reportDescriptor()).isEmpty, "\(link) cycle \(j): empty report descriptor")
        tally.hidDescriptor += 1
    }
}

/// The process's open descriptors, threads and resident memory (after
/// malloc_trim, which returns free heap pages to the system: what stays
/// resident is in use, so a leak still shows, allocator slack does not).
struct ProcessUsage: Equatable, CustomStringConvertible {
    var fds: Int
    var threads: Int
    var rssKiB: Int
    /// malloc's bytes in use (malloc_info: arenas minus free chunks, plus mmapped blocks).
    var heapKiB = 0
    /// timerfds (see `now()`), not in `fds`.
    var timerFDs = 0
    /// Foundation run loops (see `now()`): their epoll and eventfd are not in `fds`.
    var runLoops = 0
    /// What the counted descriptors are (readlink), to say which one stayed.
    var fdTargets: [String] = []
    /// SQLite's own allocations (sqlite3_memory_used): mostly the registry's
    /// page cache, which fills up to SQLite's cache_size (2000 KiB by
    /// default) as the registry file grows; the file keeps a row per arrival
    /// and removal (its `changes` table), so plugging grows it by design.
    var sqliteKiB = 0
    /// The threads' names (/proc/self/task/*/comm), to say which one stayed.
    var threadNames: [String] = []

    static let zero = ProcessUsage(fds: 0, threads: 0, rssKiB: 0)

    var description: String { "\(fds) fds (+\(timerFDs) timerfds, +\(runLoops) run loops), \(threads) threads, RSS (anonymous) \(rssKiB) KiB (heap in use \(heapKiB) KiB, of which SQLite \(sqliteKiB) KiB)" }

    /// malloc's bytes in use, from malloc_info's totals.
    private static func heapInUseKiB() -> Int {
        var buffer: UnsafeMutablePointer<CChar>?
        var size = 0
        guard let stream = open_memstream(&buffer, &size) else { return -1 }
        _ = mallocInfo(0, stream)
        fclose(stream)
        guard let buffer else { return -1 }
        let text = String(cString: buffer)
        free(buffer)
        // The totals follow the last </heap>.
        guard let tail = text.range(of: "</heap>", options: .backwards).map({ text[$0.upperBound...] }) else { return -1 }
        func value(_ tag: String) -> Int {
            guard let r = tail.range(of: tag), let q = tail[r.upperBound...].range(of: "size=\"") else { return 0 }
            return Int(tail[q.upperBound...].prefix { $0.isNumber }) ?? 0
        }
        let current = value("<system type=\"current\""), fast = value("<total type=\"fast\""),
            rest = value("<total type=\"rest\""), mmapped = value("<total type=\"mmap\"")
        return (current - fast - rest + mmapped) / 1024
    }

    static func now() -> ProcessUsage {
        _ = mallocTrim(0)
        var usage = ProcessUsage.zero
        // What each descriptor is, but timerfds: libdispatch (under Task.sleep)
        // keeps one per clock and QoS class while a timer of that kind is
        // pending, so they come and go with the timers pending at the moment
        // (a run ended with 3 descriptors fewer than after its warm-up, taken
        // 15 s after the setup's 60 s deadlines began). Counted apart.
        if let dir = opendir("/proc/self/fd") {
            let own = dirfd(dir)
            while let entry = readdir(dir) {
                guard entry.pointee.d_name.0 != UInt8(ascii: ".") else { continue }
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard let fd = Int32(name), fd != own else { continue }
                var target = [CChar](repeating: 0, count: 512)
                let n = readlink("/proc/self/fd/\(name)", &target, target.count - 1)
                let what = n > 0 ? String(decoding: target.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
                if what == "anon_inode:[timerfd]" { usage.timerFDs += 1; continue }
                usage.fds += 1
                // Pipes, sockets and anon inodes by kind (their numbers change).
                usage.fdTargets.append(what.hasPrefix("pipe:") ? "pipe" : what.hasPrefix("socket:") ? "socket" : what)
            }
            closedir(dir)
            // Foundation's run loops (CFRunLoop: an epoll, an eventfd and a
            // timerfd each; devif uses neither epoll nor RunLoop): one made on
            // a libdispatch worker by the setup's Process calls went away when
            // that worker ended, so a run saw eventpoll, eventfd and timerfd
            // gone together. Counted apart, an eventfd each.
            usage.runLoops = usage.fdTargets.filter { $0 == "anon_inode:[eventpoll]" }.count
            usage.fdTargets.removeAll { $0 == "anon_inode:[eventpoll]" }
            for _ in 0..<usage.runLoops {
                if let k = usage.fdTargets.firstIndex(of: "anon_inode:[eventfd]") { usage.fdTargets.remove(at: k) }
            }
            usage.fds = usage.fdTargets.count
            usage.fdTargets.sort()
        }
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let value = Int(parts[1]) else { continue }
            if parts[0] == "Threads:" { usage.threads = value }
            // Anonymous memory only: file-backed pages (library code run for
            // the first time, e.g. by the end's formatting) are not a leak.
            if parts[0] == "RssAnon:" { usage.rssKiB = value }
        }
        usage.heapKiB = heapInUseKiB()
        usage.sqliteKiB = Int(sqliteMemoryUsed() / 1024)
        usage.threadNames = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []).compactMap {
            (try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines)
        }.sorted()
        return usage
    }

    /// A sample after 7 quiet seconds: libdispatch's worker threads (which
    /// also run Swift's tasks on Linux) end after 5 s idle, so its pool
    /// shrinks to what is in use; polling in between would keep waking
    /// them. Same at the baseline and at the end.
    static func quiet() async throws -> ProcessUsage {
        try await Task.sleep(for: .seconds(7))
        return now()
    }

    /// A baseline, after a quiet wait.
    static func settled() async throws -> ProcessUsage { try await quiet() }

    /// The end figure: the first quiet sample (of at most 3) whose fds and
    /// threads equal the baseline's, else the last; and how long that took.
    static func settled(towards baseline: ProcessUsage) async throws -> (ProcessUsage, Duration) {
        let start = ContinuousClock.now
        var u = try await quiet()
        for _ in 0..<2 where u.fds != baseline.fds || u.threads != baseline.threads {
            u = try await quiet()
        }
        return (u, ContinuousClock.now - start)
    }

    /// The leak check is on malloc's bytes in use (SQLite's own taken off):
    /// at most 512 KiB more. What a leak of this test's size would show: one
    /// small object (64 bytes with malloc's overhead) a cycle is 640 KB over
    /// 10,000 cycles, one 4 KiB buffer a cycle 40 MB; caches that fill once
    /// (the runtime's metadata, dictionaries' capacity) are the noise: seen
    /// -103 to +256 KiB at the ends of runs. It was 1 MiB while the harness's
    /// own finished deadlines (cancelled Task.sleeps, kept until their 60 s
    /// were up) and a pipeline leak (64 bytes a removal) added up to +1044
    /// KiB in 300 plug/unplug operations; without them, 1,000 operations
    /// ended at +27 KiB and 10,000 open/close cycles at -74 KiB.
    static let heapToleranceKiB = 512
    /// Anonymous RSS (after malloc_trim) also holds the stacks of ended
    /// threads, which glibc caches for reuse (up to 40 MiB): the plug test's
    /// reader threads and libdispatch's workers come and go, and a run of 100
    /// plugs saw +3.4 MiB with the heap +0.5 MiB. So RSS gets a looser bound.
    static let rssToleranceKiB = 8192
    /// SQLite's default page cache (2000 KiB) plus room for its schema and statements.
    static let sqliteBoundKiB = 4096
    func rssDelta(from baseline: ProcessUsage) -> String {
        let d = rssKiB - baseline.rssKiB
        let h = heapKiB - baseline.heapKiB, q = sqliteKiB - baseline.sqliteKiB
        func signed(_ v: Int) -> String { (v >= 0 ? "+" : "") + String(v) }
        return "\(signed(d)) KiB, \(signed(d - q)) KiB without SQLite's growth (tolerance \(Self.rssToleranceKiB) KiB); heap in use \(signed(h)) KiB, \(signed(h - q)) KiB without SQLite's (tolerance \(Self.heapToleranceKiB) KiB)"
    }

    /// `assemblyPeak`: how many devices were plugged at once, when some
    /// were. devif's assembly workers are made as plugs need them and kept
    /// (up to 16), so a round whose plugs overlap more than the warm-up's did
    /// adds one: that pool is counted apart, never fewer than after the
    /// warm-up and never more than devices plugged at once (without plugs,
    /// exactly as many); every other thread exactly as after the warm-up.
    func expectBack(to baseline: ProcessUsage, _ what: String, assemblyPeak: Int? = nil) throws {
        if fds != baseline.fds {
            var gone = baseline.fdTargets, added: [String] = []
            for t in fdTargets { if let k = gone.firstIndex(of: t) { gone.remove(at: k) } else { added.append(t) } }
            throw LabFailure("open file descriptors \(what): \(fds), after the warm-up \(baseline.fds): new \(added), gone \(gone)")
        }
        // libdispatch's global worker pool (com.apple.root.default-qos, cut
        // to 15 bytes), which also runs Swift's tasks on Linux: it grows
        // while workers block (the test's synchronous calls from tasks) and
        // shrinks only after 5 s without a wake-up, which the deadlines'
        // pending sleeps (up to 60 s) keep giving. Counted apart, bounded.
        let pool = threadNames.filter { $0.hasSuffix("default-qos") }.count
        let basePool = baseline.threadNames.filter { $0.hasSuffix("default-qos") }.count
        let assembly = threadNames.filter { $0 == "devif-assembly" }.count
        let baseAssembly = baseline.threadNames.filter { $0 == "devif-assembly" }.count
        try expect(threads - pool - assembly == baseline.threads - basePool - baseAssembly,
                   "threads \(what): \(threads - pool - assembly) besides libdispatch's \(pool) pool workers and \(assembly) assembly workers, "
                   + "after the warm-up \(baseline.threads - basePool - baseAssembly) besides \(basePool) and \(baseAssembly) "
                   + "(names now \(threadNames), after the warm-up \(baseline.threadNames))")
        try expect(assembly >= baseAssembly && assembly <= max(baseAssembly, assemblyPeak ?? baseAssembly),
                   "devif's assembly workers \(what): \(assembly), after the warm-up \(baseAssembly)"
                   + (assemblyPeak.map { ", with at most \($0) devices plugged at once" } ?? ", with no device plugged"))
        try expect(pool <= basePool + 4, "libdispatch's worker pool \(what): \(pool) threads, after the warm-up \(basePool) (names now \(threadNames))")
        // SQLite's page cache is bounded by its cache_size; it is counted
        // apart (its growth is taken off), and checked against that bound.
        let growth = (rssKiB - baseline.rssKiB) - (sqliteKiB - baseline.sqliteKiB)
        try expect(growth < Self.rssToleranceKiB,
                   "RSS \(what) grew by \(growth) KiB besides SQLite's \(sqliteKiB - baseline.sqliteKiB) KiB (\(baseline) -> \(self)), tolerance \(Self.rssToleranceKiB) KiB")
        let heapGrowth = (heapKiB - baseline.heapKiB) - (sqliteKiB - baseline.sqliteKiB)
        try expect(heapGrowth < Self.heapToleranceKiB,
                   "malloc's bytes in use \(what) grew by \(heapGrowth) KiB besides SQLite's (\(baseline) -> \(self)), tolerance \(Self.heapToleranceKiB) KiB")
        try expect(sqliteKiB < Self.sqliteBoundKiB, "SQLite \(what) uses \(sqliteKiB) KiB, over \(Self.sqliteBoundKiB) KiB (its 2000 KiB page cache and its statements)")
    }
}

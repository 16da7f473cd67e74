import DevifCore
import DevifUSB
import Foundation
import Synchronization

// The USB source calls its sink from libusb's event thread (a removal) and
// from its workers (an arrival made ready). stop() from inside the sink must
// return at once (the teardown waits for those very threads), make that
// call the last one, and leave the source able to start again.

/// Sink calls of one start, and whether one began after stop() returned.
private final class SinkLog: Sendable {
    private struct State {
        var stopReturned = false
        var callsAfterStop = 0
        var stopTook: Duration?
    }
    private let state = Mutex(State())
    let inbox = Inbox<String>()

    /// Records `event`; false if stop() had already returned.
    @discardableResult
    func record(_ event: SourceEvent) -> Bool {
        let name = Self.name(event)
        let inTime = state.withLock { s -> Bool in
            if s.stopReturned { s.callsAfterStop += 1 }
            return !s.stopReturned
        }
        inbox.post(name)
        return inTime
    }

    func stopped(after time: Duration) {
        state.withLock { s in
            s.stopReturned = true
            s.stopTook = time
        }
        inbox.post("stop returned")
    }

    var callsAfterStop: Int { state.withLock { $0.callsAfterStop } }
    var stopTook: Duration? { state.withLock { $0.stopTook } }

    static func name(_ event: SourceEvent) -> String {
        switch event {
        case .arrived(let s): "arrived \(hex(s.vendorID)):\(hex(s.productID))"
        case .removed: "removed"
        case .enumerated: "enumerated"
        case .notice(let n): "notice \(n.message)"
        }
    }
}

/// Starts `source` with a sink that stops it, from inside the sink call,
/// at the first event `stopsOn` picks.
private func startStopping(_ source: USBSource, on stopsOn: @escaping @Sendable (SourceEvent) -> Bool) throws -> SinkLog {
    let log = SinkLog()
    try source.start { [source] event in
        guard log.record(event), stopsOn(event) else { return }
        let start = ContinuousClock.now
        source.stop()
        log.stopped(after: ContinuousClock.now - start)
    }
    return log
}

func registerSourceStopTests(_ r: inout LabRunner) {
    r.add("discovery: the USB source stopped from inside its sink, on a worker (an arrival) and on libusb's event thread (a removal), returns at once, calls the sink no more and starts again") {
        try Devlab.run(["create", "ss1", "loopback", "--vid", "1209", "--pid", "0b40", "--serial", "LAB-SS-1"])
        try Devlab.plug("ss1")
        let source = USBSource()

        // 1. On a worker: the first arrival of the enumeration stops it.
        let first = try startStopping(source) { if case .arrived = $0 { true } else { false } }
        _ = try await first.inbox.next(within: 30, "stop() called from the first arrival's sink call to return") { $0 == "stop returned" }
        let took = try first.stopTook.orFail("stop() inside the sink returned no time")
        try expect(took < .seconds(1), "stop() inside the sink on a worker took \(took)")

        // 2. Started again: it enumerates the gadget; then its removal
        // (libusb's event thread calls the sink) stops it.
        let second = try startStopping(source) { if case .removed = $0 { true } else { false } }
        _ = try await second.inbox.next(within: 30, "the restarted source's arrival of 1209:0b40") { $0 == "arrived 1209:0b40" }
        _ = try await second.inbox.next(within: 30, "the restarted source's .enumerated") { $0 == "enumerated" }
        // The first start's workers were long done: a late call would have come.
        try expectEqual(first.callsAfterStop, 0, "sink calls of the first start after its stop() returned")
        try Devlab.unplug("ss1")
        _ = try await second.inbox.next(within: 30, "stop() called from the removal's sink call to return") { $0 == "stop returned" }
        let took2 = try second.stopTook.orFail("stop() inside the sink returned no time")
        try expect(took2 < .seconds(1), "stop() inside the sink on libusb's event thread took \(took2)")

        // 3. A third start finds the gadget again; its stop() from this task ends it.
        try Devlab.plug("ss1")
        let third = SinkLog()
        try source.start { event in third.record(event) }
        _ = try await third.inbox.next(within: 30, "the third start's arrival of 1209:0b40") { $0 == "arrived 1209:0b40" }
        _ = try await third.inbox.next(within: 30, "the third start's .enumerated") { $0 == "enumerated" }
        try expectEqual(second.callsAfterStop, 0, "sink calls of the second start after its stop() returned")
        source.stop()
        third.stopped(after: .zero)
        try Devlab.unplug("ss1")  // reaches no sink: the source is stopped
        try expectEqual(third.callsAfterStop, 0, "sink calls of the third start after stop()")
        figure("source stop from the sink: on a worker \(took), on libusb's event thread \(took2)")
    }
}

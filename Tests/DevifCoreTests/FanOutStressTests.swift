import Dispatch
import Foundation
import Synchronization
import Testing
@testable import DevifCore

/// A published event for the stress test: a sequence number and a shared heap
/// string, so every copy into a queue is a retain (a torn read would crash or be
/// reported by TSan).
private struct StressEvent: Sendable {
    let seq: Int
    let payload: String
}

/// Checks one subscriber's stream: events strictly in order, and every gap
/// exactly covered by the overflow notices before it.
private struct SequenceChecker {
    /// The next sequence number expected if nothing is missed; nil until the first
    /// event for subscribers that joined mid-stream.
    var next: Int?
    var events = 0
    var missed = 0
    var overflowNotices = 0
    var problems: [String] = []
    let payload: String

    init(startingAt start: Int?, payload: String) {
        next = start
        self.payload = payload
    }

    mutating func record(_ d: FanOut<StressEvent>.Delivery) {
        switch d {
        case .event(let e):
            if let n = next, e.seq != n, problems.count < 5 {
                problems.append("expected \(n), got \(e.seq) (after \(events) events, \(missed) missed)")
            }
            if e.seq % 1024 == 0, e.payload != payload, problems.count < 5 {
                problems.append("payload of \(e.seq) damaged")
            }
            next = e.seq + 1
            events += 1
        case .overflow(let n):
            if n == 0, problems.count < 5 { problems.append("overflow notice with 0 missed") }
            if next != nil { next! += Int(n) }
            missed += Int(n)
            overflowNotices += 1
        }
    }
}

private final class Progress: Sendable {
    let value = Atomic<Int>(0)
}

/// Mutable state owned by one callback subscription's thread, read after `onEnd`.
private final class CallbackState: @unchecked Sendable {
    var checker: SequenceChecker
    let progress = Atomic<Int>(0)
    let ended = DispatchSemaphore(value: 0)
    init(_ checker: SequenceChecker) { self.checker = checker }
}

private enum Environment {
    /// Whether this process runs under ThreadSanitizer (its runtime exports `__tsan_init`).
    static let underTSan = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil
    static let debugBuild = _isDebugAssertConfiguration()
}

@Suite("FanOutStress")
struct FanOutStressTests {
    typealias S = FanOutTestSupport

    /// Both ways of resuming a parked async subscriber: through the shared
    /// resumer thread (the default) and from the publisher itself (the
    /// pipeline's fan-out).
    @Test(.timeLimit(.minutes(3)), arguments: [false, true])
    func manySubscribersWithSlowStalledAndChurningOnes(resumesOnPublisherThread: Bool) async throws {
        let total = Environment.underTSan ? 30_000 : (Environment.debugBuild ? 300_000 : 1_000_000)
        let payload = String(repeating: "report ", count: 20)   // heap-backed
        let fan = FanOut<StressEvent>(resumesOnPublisherThread: resumesOnPublisherThread)
        let fastCapacity = 1024

        // Fast subscribers: must see every event. The publisher paces itself on them
        // (test-level back-pressure below), so they never overflow.
        let fastAsync = (0..<3).map { _ in fan.subscribe(capacity: fastCapacity) }
        let fastProgress = (0..<3).map { _ in Progress() }
        let fastCallback = CallbackState(SequenceChecker(startingAt: 0, payload: payload))
        let fastToken = fan.subscribe(capacity: fastCapacity, name: "fast",
                                      onEnd: { fastCallback.ended.signal() }) { d in
            fastCallback.checker.record(d)
            fastCallback.progress.store(fastCallback.checker.events, ordering: .releasing)
        }
        let progressOfFast = fastProgress  // captured by tasks
        let fastTasks = fastAsync.enumerated().map { (i, sub) in
            Task { () -> SequenceChecker in
                var c = SequenceChecker(startingAt: 0, payload: payload)
                for await d in sub {
                    c.record(d)
                    progressOfFast[i].value.store(c.events, ordering: .relaxed)
                }
                return c
            }
        }

        // Slow subscribers: small queues, yielding and sleeping; they overflow.
        let slowTasks = [4, 16, 64].map { cap in
            let sub = fan.subscribe(capacity: cap)
            return Task { () -> SequenceChecker in
                var c = SequenceChecker(startingAt: 0, payload: payload)
                var n = 0
                for await d in sub {
                    c.record(d)
                    n += 1
                    if n % 256 == 0 { try? await Task.sleep(for: .milliseconds(1)) } else { await Task.yield() }
                }
                return c
            }
        }
        let slowCallback = CallbackState(SequenceChecker(startingAt: 0, payload: payload))
        let slowToken = fan.subscribe(capacity: 32, name: "slow",
                                      onEnd: { slowCallback.ended.signal() }) { d in
            slowCallback.checker.record(d)
            if slowCallback.checker.events % 64 == 0 { usleep(200) }
        }

        // Stalled subscribers: one callback stuck until the publisher is done, one
        // async subscription not iterated until then.
        let gate = DispatchSemaphore(value: 0)
        let stalledCallback = CallbackState(SequenceChecker(startingAt: 0, payload: payload))
        let stalledToken = fan.subscribe(capacity: 8, name: "stalled",
                                         onEnd: { stalledCallback.ended.signal() }) { d in
            if stalledCallback.checker.events + stalledCallback.checker.missed == 0 { gate.wait() }
            stalledCallback.checker.record(d)
        }
        let stalledAsync = fan.subscribe(capacity: 32)

        // Churn: subscribe/unsubscribe from another thread throughout.
        let publisherDone = Atomic<Bool>(false)
        let churnTasks = Mutex<[Task<SequenceChecker, Never>]>([])
        let churnCallbacks = Mutex<[CallbackState]>([])
        let churnOps = Atomic<Int>(0)
        let churnDone = DispatchSemaphore(value: 0)
        Thread {
            var i = 0
            while !publisherDone.load(ordering: .acquiring) && i < 300 {
                let cap = 1 + (i * 7) % 64
                switch i % 3 {
                case 0:
                    // Subscribe and leave at once (possibly while the publisher is inside the slot).
                    let s = fan.subscribe(capacity: cap)
                    s.cancel()
                case 1:
                    let state = CallbackState(SequenceChecker(startingAt: nil, payload: payload))
                    let token = fan.subscribe(capacity: cap, name: "churn",
                                              onEnd: { state.ended.signal() }) { d in state.checker.record(d) }
                    usleep(300)
                    token.cancel()
                    churnCallbacks.withLock { $0.append(state) }
                default:
                    let sub = fan.subscribe(capacity: cap)
                    let take = 10 + i % 50
                    let task = Task { () -> SequenceChecker in
                        var c = SequenceChecker(startingAt: nil, payload: payload)
                        var it = sub.makeAsyncIterator()
                        for _ in 0..<take {
                            guard let d = await it.next() else { break }
                            c.record(d)
                        }
                        return c   // dropping the iterator and subscription unsubscribes
                    }
                    churnTasks.withLock { $0.append(task) }
                }
                churnOps.add(1, ordering: .relaxed)
                i += 1
                usleep(100)
            }
            churnDone.signal()
        }.start()

        // The publisher: its own thread; it must finish although some subscribers
        // are stalled (if it ever waited on one, this would time out).
        let publisherFinished = DispatchSemaphore(value: 0)
        Thread {
            var minFast = 0
            for seq in 0..<total {
                // Test-level pacing on the fast subscribers only (the fan-out itself
                // never waits): keep them within their queue capacity.
                while seq - minFast >= fastCapacity - 8 {
                    minFast = min(progressOfFast.map { $0.value.load(ordering: .relaxed) }.min()!,
                                  fastCallback.progress.load(ordering: .acquiring))
                    if seq - minFast >= fastCapacity - 8 { sched_yield() }
                }
                fan.publish(StressEvent(seq: seq, payload: payload))
            }
            fan.finish()
            publisherDone.store(true, ordering: .releasing)
            publisherFinished.signal()
        }.start()

        try await S.wait(publisherFinished, seconds: 120,
                         "the publisher to publish \(total) events (it must never block on a stalled subscriber)")
        gate.signal()
        try await S.wait(churnDone, seconds: 60, "the churn thread to stop")

        // Fast: everything, in order, no duplicates, no overflow.
        for (i, task) in fastTasks.enumerated() {
            let c = try await S.withTimeout(60, "fast subscriber \(i) to end") { await task.value }
            #expect(c.problems.isEmpty, "fast \(i): \(c.problems)")
            #expect(c.events == total && c.missed == 0, "fast \(i): \(c.events) events, \(c.missed) missed")
        }
        try await S.wait(fastCallback.ended, seconds: 60, "the fast callback subscriber to end")
        #expect(fastCallback.checker.problems.isEmpty, "fast callback: \(fastCallback.checker.problems)")
        #expect(fastCallback.checker.events == total && fastCallback.checker.missed == 0)

        // Slow and stalled: in order; events plus reported misses account for everything.
        var slowOverflowed = 0
        for (i, task) in slowTasks.enumerated() {
            let c = try await S.withTimeout(60, "slow subscriber \(i) to end") { await task.value }
            #expect(c.problems.isEmpty, "slow \(i): \(c.problems)")
            #expect(c.events + c.missed == total, "slow \(i): \(c.events) + \(c.missed) != \(total)")
            if c.missed > 0 { slowOverflowed += 1 }
        }
        for (name, state) in [("slow callback", slowCallback), ("stalled callback", stalledCallback)] {
            try await S.wait(state.ended, seconds: 60, "the \(name) subscriber to end")
            #expect(state.checker.problems.isEmpty, "\(name): \(state.checker.problems)")
            #expect(state.checker.events + state.checker.missed == total,
                    "\(name): \(state.checker.events) + \(state.checker.missed) != \(total)")
        }
        #expect(stalledCallback.checker.missed > 0 && stalledCallback.checker.events <= 9)
        var stalled = SequenceChecker(startingAt: 0, payload: payload)
        for await d in stalledAsync { stalled.record(d) }
        #expect(stalled.problems.isEmpty, "stalled async: \(stalled.problems)")
        #expect(stalled.events == 32 && stalled.missed == total - 32 && stalled.overflowNotices == 1)
        #expect(slowOverflowed > 0, "with \(total) events at least one slow subscriber should have overflowed")

        // Churn: whatever each saw was in order with gaps reported.
        #expect(churnOps.load(ordering: .relaxed) > 0)
        for task in churnTasks.withLock({ $0 }) {
            let c = try await S.withTimeout(60, "a churn subscriber to end") { await task.value }
            #expect(c.problems.isEmpty, "churn: \(c.problems)")
        }
        for state in churnCallbacks.withLock({ $0 }) {
            try await S.wait(state.ended, seconds: 60, "a churn callback subscriber to end")
            #expect(state.checker.problems.isEmpty, "churn callback: \(state.checker.problems)")
        }
        _ = (fastToken, slowToken, stalledToken)
        // Churned-away subscriptions freed their slots; the rest ended with the stream.
        #expect(fan.subscriberCount == 0)
    }
}

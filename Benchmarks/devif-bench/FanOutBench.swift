import ArgumentParser
import DevifCore
import Dispatch
import Foundation
import Synchronization

// The fan-out rows of the benchmark: throughput against two AsyncStream
// baselines, allocations per publish, and publish latency with a stalled
// subscriber. The publisher always has a thread of its own (not a pool thread), and
// every subscriber is an async task on the global executor, for every impl.

/// What is published: an Int, or a 64-byte inline report as the HID path uses.
protocol BenchPayload: Sendable {
    static func make(_ i: Int) -> Self
    /// Folded into a per-subscriber checksum, so consuming cannot be optimised
    /// away and a lost or duplicated event is caught.
    var checksumValue: Int { get }
}

extension Int: BenchPayload {
    @inline(__always) static func make(_ i: Int) -> Int { i }
    @inline(__always) var checksumValue: Int { self }
}

typealias Report64 = InlineBytes<64>

/// One prebuilt 64-byte report, published every time: copying it is the cost.
let benchReport: Report64 = try! Report64([UInt8](repeating: 0xa5, count: 64))

extension InlineBytes: BenchPayload where capacity == 64 {
    @inline(__always) static func make(_ i: Int) -> InlineBytes<64> { benchReport }
    @inline(__always) var checksumValue: Int { count }
}

enum PayloadKind: String, ExpressibleByArgument, CaseIterable {
    case int, report64
}

enum FanOutImpl: String, ExpressibleByArgument, CaseIterable {
    case devif
    case asyncstream
    case mutexContinuations = "mutex-continuations"
    /// All three, alternating run by run (not a fan-out itself).
    case all
}

struct BenchCheckFailed: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What one subscriber task saw.
struct SubscriberResult: Sendable {
    var events = 0
    var missed: UInt64 = 0
    var checksum = 0
    var endNanoseconds: UInt64 = 0
}

/// Collects the subscriber tasks' results; the main thread blocks on it (the
/// root command is synchronous, and the publisher must not be a pool thread).
final class TaskLatch<T: Sendable>: Sendable {
    private let results = Mutex<[T]>([])
    private let ready = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)

    /// Called by a task once it is about to wait for its first delivery.
    func started() { ready.signal() }
    func finished(_ result: T) {
        results.withLock { $0.append(result) }
        done.signal()
    }
    func waitStarted(_ n: Int) { for _ in 0..<n { ready.wait() } }
    func waitFinished(_ n: Int) -> [T] {
        for _ in 0..<n { done.wait() }
        return results.withLock { $0 }
    }
}

/// Runs `body` on a new thread and waits for it without blocking a pool thread.
/// The publisher gets a thread of its own (as the pipeline's sources do), so
/// the cooperative pool (one thread per core) is left whole to the subscriber
/// tasks, for every impl alike.
func onPublisherThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = "bench-publisher"
        thread.start()
    }
}

/// Consumes a devif subscription to its end in a new task.
func consumeDevif<E: BenchPayload>(_ sub: FanOut<E>.Subscription, into latch: TaskLatch<SubscriberResult>) {
    Task.detached {
        var r = SubscriberResult()
        latch.started()
        for await d in sub {
            switch d {
            case .event(let e):
                r.events += 1
                r.checksum &+= e.checksumValue
            case .overflow(let n):
                r.missed += n
            }
        }
        r.endNanoseconds = monotonicNanoseconds()
        latch.finished(r)
    }
}

/// Consumes an AsyncStream to its end in a new task (both baselines).
func consumeStream<E: BenchPayload>(_ stream: AsyncStream<E>, into latch: TaskLatch<SubscriberResult>) {
    Task.detached {
        var r = SubscriberResult()
        latch.started()
        for await e in stream {
            r.events += 1
            r.checksum &+= e.checksumValue
        }
        r.endNanoseconds = monotonicNanoseconds()
        latch.finished(r)
    }
}

/// One throughput run: returns (deliveries, seconds, missed, checksum ok).
func fanOutRun<E: BenchPayload>(_: E.Type, impl: FanOutImpl, subscribers n: Int, events: Int)
    -> (deliveries: Int, seconds: Double, missed: UInt64, checksumOK: Bool)
{
    let latch = TaskLatch<SubscriberResult>()
    let start: UInt64
    switch impl {
    case .devif:
        let fan = FanOut<E>()
        // Large enough that nothing overflows (clamped at FanOut.maximumCapacity).
        let subs = (0..<n).map { _ in fan.subscribe(capacity: events) }
        for s in subs { consumeDevif(s, into: latch) }
        latch.waitStarted(n)
        start = monotonicNanoseconds()
        for i in 0..<events { fan.publish(E.make(i)) }
        fan.finish()
    case .asyncstream:
        // One stream per subscriber, default (unbounded) buffering; the
        // publisher holds the continuations privately.
        let pairs = (0..<n).map { _ in AsyncStream<E>.makeStream() }
        for p in pairs { consumeStream(p.stream, into: latch) }
        let continuations = pairs.map(\.continuation)
        latch.waitStarted(n)
        start = monotonicNanoseconds()
        for i in 0..<events {
            let e = E.make(i)
            for c in continuations { c.yield(e) }
        }
        for c in continuations { c.finish() }
    case .all:
        preconditionFailure("fanOutRun takes one impl")
    case .mutexContinuations:
        // The obvious shared registry: subscribers add their continuation
        // under a lock; the publisher holds it while yielding to each.
        let registry = Mutex<[AsyncStream<E>.Continuation]>([])
        for _ in 0..<n {
            let (stream, continuation) = AsyncStream<E>.makeStream()
            registry.withLock { $0.append(continuation) }
            consumeStream(stream, into: latch)
        }
        latch.waitStarted(n)
        start = monotonicNanoseconds()
        for i in 0..<events {
            let e = E.make(i)
            registry.withLock { for c in $0 { c.yield(e) } }
        }
        registry.withLock { for c in $0 { c.finish() } }
    }
    let results = latch.waitFinished(n)
    let end = results.map(\.endNanoseconds).max() ?? start
    let delivered = results.reduce(0) { $0 + $1.events }
    let missed = results.reduce(UInt64(0)) { $0 + $1.missed }
    // With no drops every subscriber must have seen every event exactly once.
    var expected = 0
    for i in 0..<events { expected &+= E.make(i).checksumValue }
    let checksumOK = missed > 0 || results.allSatisfy { $0.events == events && $0.checksum == expected }
    return (delivered, Double(end - start) / 1e9, missed, checksumOK)
}

struct FanOutThroughput: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "Fan-out throughput: deliveries/s from one publisher to N async subscribers.",
        discussion: """
            One publisher (a thread of its own) publishes --events events as fast as it can; \
            N subscriber tasks each consume every event. Value = events received by all \
            subscribers / wall time from the first publish until the last subscriber saw \
            the end of its stream. Impls: devif (FanOut async subscriptions, capacity \
            >= events so nothing overflows; overflows, if any, are in the note and not \
            counted), asyncstream (one AsyncStream per subscriber, unbounded, the \
            publisher yields to each continuation), mutex-continuations (a \
            Mutex<[AsyncStream.Continuation]> the publisher locks and yields to each). \
            Prints measure "fanout-N", unit "deliveries/s", one line per run.
            """)

    @Option(help: "Subscriber tasks.") var subscribers = 4
    @Option(help: "devif | asyncstream | mutex-continuations | all (alternating run by run).") var impl: FanOutImpl = .devif
    @Option(help: "Events published per run.") var events = 500_000
    @Option(help: "Measured runs (one sample line each).") var runs = 5
    @Option(help: "Unmeasured runs first (thread pool start-up, page faults).") var warmup = 1
    @Option(help: "int | report64 (InlineBytes<64>, as the HID path publishes).") var payload: PayloadKind = .int

    func validate() throws {
        guard subscribers >= 1, events >= 1, runs >= 1, warmup >= 0 else {
            throw ValidationError("subscribers, events and runs must be positive")
        }
    }

    func run() async throws {
        let ok: Bool
        switch payload {
        case .int: ok = await measure(Int.self)
        case .report64: ok = await measure(Report64.self)
        }
        if !ok { throw BenchCheckFailed("a subscriber missed or duplicated events (see CHECKSUM-MISMATCH)") }
    }

    func measure<E: BenchPayload>(_ type: E.Type) async -> Bool {
        // `all` alternates the impls run by run, so a change in machine load
        // (this host is shared) falls on all of them alike.
        let impls = impl == .all ? [FanOutImpl.devif, .asyncstream, .mutexContinuations] : [impl]
        let (subscribers, events, runs, warmup, payload) = (subscribers, events, runs, warmup, payload)
        return await onPublisherThread {
            for i in impls {
                for _ in 0..<warmup {
                    _ = fanOutRun(type, impl: i, subscribers: subscribers, events: min(events, 100_000))
                }
            }
            var ok = true
            for _ in 0..<runs {
                for i in impls {
                    let r = fanOutRun(type, impl: i, subscribers: subscribers, events: events)
                    var note = "events=\(events) subscribers=\(subscribers) payload=\(payload.rawValue) seconds=\(String(format: "%.4f", r.seconds))"
                    if r.missed > 0 { note += " overflow-missed=\(r.missed)" }
                    if !r.checksumOK { note += " CHECKSUM-MISMATCH"; ok = false }
                    Sample(measure: "fanout-\(subscribers)", impl: i.rawValue,
                           value: Double(r.deliveries) / r.seconds, unit: "deliveries/s", note: note).emit()
                }
            }
            return ok
        }
    }
}

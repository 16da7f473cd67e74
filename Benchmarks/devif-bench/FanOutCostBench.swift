import AllocationCounting
import ArgumentParser
import DevifCore
import Dispatch
import Foundation

struct FanOutAllocations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout-allocations",
        abstract: "Heap allocations per published event (steady state, 4 async subscribers).",
        discussion: """
            A FanOut with 4 async subscriber tasks (capacity large enough that nothing \
            overflows) is warmed up, then --events publishes of a 64-byte InlineBytes \
            report are made as fast as possible while AllocationCounter counts the \
            malloc-family calls of the publishing thread. Subscribers wake and park \
            meanwhile; their resumes run on other threads and are not counted. \
            Prints measure "allocations-per-event", impl "devif", unit "allocs", one line per run.
            """)

    @Option(help: "Publishes counted per run.") var events = 200_000
    @Option(help: "Publishes before counting starts.") var warmupEvents = 10_000
    @Option(help: "Measured runs (one sample line each).") var runs = 5

    func run() async throws {
        let (events, warmupEvents, runs) = (events, warmupEvents, runs)
        let ok = await onPublisherThread { () -> Bool in
            var ok = true
            for _ in 0..<runs {
                let fan = FanOut<Report64>()
                let latch = TaskLatch<SubscriberResult>()
                let subscribers = 4
                for _ in 0..<subscribers {
                    consumeDevif(fan.subscribe(capacity: events + warmupEvents), into: latch)
                }
                latch.waitStarted(subscribers)
                for i in 0..<warmupEvents { fan.publish(.make(i)) }
                let allocations = AllocationCounter.count {
                    for i in 0..<events { fan.publish(.make(i)) }
                }
                fan.finish()
                let results = latch.waitFinished(subscribers)
                let delivered = results.reduce(0) { $0 + $1.events }
                let missed = results.reduce(UInt64(0)) { $0 + $1.missed }
                // The count means something only if the events really went out.
                if delivered + Int(missed) != subscribers * (events + warmupEvents) { ok = false }
                Sample(measure: "allocations-per-event", impl: "devif",
                       value: Double(allocations) / Double(events), unit: "allocs",
                       note: "allocations=\(allocations) events=\(events) subscribers=\(subscribers) delivered=\(delivered) overflow-missed=\(missed) counted=publisher-thread").emit()
            }
            return ok
        }
        if !ok { throw BenchCheckFailed("subscribers did not receive every event") }
    }
}

enum StalledMode: String, ExpressibleByArgument, CaseIterable {
    case without = "0", with = "1", both
}

struct PublishLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish-latency",
        abstract: "p99 time of one FanOut.publish with 4 live subscribers, with or without a stalled one.",
        discussion: """
            4 async subscriber tasks consume everything; with --stalled 1 a fifth \
            subscription is made and never read (its queue overflows on every publish, \
            which is the point). The publisher (its own thread) publishes a 64-byte \
            InlineBytes report every --interval-ns (spinning to the deadline; the same \
            pacing with and without the stalled subscriber) and times each publish with \
            CLOCK_MONOTONIC. --stalled both runs the two fan-outs side by side, \
            alternating publishes between them, so both see the same machine load. \
            Prints measure "publish-p99", impl "devif-stalled" or "devif-no-stalled", \
            unit "ns", one line per run and configuration (p50, p99.9, max in the note).
            """)

    @Option(help: "0: no stalled subscriber; 1: one stalled subscriber; both: the two interleaved.")
    var stalled: StalledMode = .without
    @Option(help: "Timed publishes per run (per fan-out).") var events = 200_000
    @Option(help: "Untimed publishes first.") var warmupEvents = 10_000
    @Option(help: "Pacing: one publish (per fan-out) every this many ns.") var intervalNs = 10_000
    @Option(help: "Live subscribers' queue capacity (room for bursts when the machine is busy).") var capacity = 65_536
    @Option(help: "Measured runs.") var runs = 5

    func validate() throws {
        guard events >= 100, runs >= 1, intervalNs >= 0 else { throw ValidationError("bad counts") }
    }

    func run() async throws {
        let configs: [Bool] = switch stalled {
        case .without: [false]
        case .with: [true]
        case .both: [false, true]
        }
        let (events, warmupEvents, intervalNs, capacity, runs) = (events, warmupEvents, intervalNs, capacity, runs)
        await onPublisherThread {
            for _ in 0..<runs {
                latencyRun(stalledConfigs: configs, events: events, warmupEvents: warmupEvents,
                           intervalNs: intervalNs, capacity: capacity)
            }
        }
    }
}

/// One run: a fan-out per configuration, publishes alternating between them.
func latencyRun(stalledConfigs: [Bool], events: Int, warmupEvents: Int, intervalNs: Int, capacity: Int) {
    let live = 4
    let latch = TaskLatch<SubscriberResult>()
    let fans = stalledConfigs.map { _ in FanOut<Report64>() }
    for fan in fans {
        for _ in 0..<live { consumeDevif(fan.subscribe(capacity: capacity), into: latch) }
    }
    // Never iterated; kept alive until after the timed loop.
    let stalledSubscriptions = zip(fans, stalledConfigs).compactMap { $1 ? $0.subscribe() : nil }
    latch.waitStarted(live * fans.count)
    var times = fans.map { _ in [Double](repeating: 0, count: events) }
    var next = monotonicNanoseconds()
    for i in 0..<(warmupEvents + events) {
        // Pace by spinning to the deadline: sleeping would add the timer's slack.
        next += UInt64(intervalNs)
        while monotonicNanoseconds() < next {}
        for k in fans.indices {
            // Alternate which fan-out goes first, so neither always follows the other.
            let f = (i + k) % fans.count
            let t0 = monotonicNanoseconds()
            fans[f].publish(.make(i))
            let t1 = monotonicNanoseconds()
            if i >= warmupEvents { times[f][i - warmupEvents] = Double(t1 - t0) }
        }
    }
    for fan in fans { fan.finish() }
    let results = latch.waitFinished(live * fans.count)
    withExtendedLifetime(stalledSubscriptions) {}
    // Results arrive in completion order; the overflow count is for all live subscribers.
    let missed = results.reduce(UInt64(0)) { $0 + $1.missed }
    for (f, isStalled) in stalledConfigs.enumerated() {
        let t = times[f]
        let note = String(format: "p50=%.0f p99.9=%.0f max=%.0f", percentile(t, 50)!, percentile(t, 99.9)!, percentile(t, 100)!)
            + " events=\(events) interval-ns=\(intervalNs) live=\(live) fan-outs=\(fans.count) live-overflow-missed-all=\(missed)"
        Sample(measure: "publish-p99", impl: isStalled ? "devif-stalled" : "devif-no-stalled",
               value: percentile(t, 99)!, unit: "ns", note: note).emit()
    }
}

import AllocationCounting
import ArgumentParser
import DevifCore
import Dispatch
import Foundation

struct FanOutAllocations: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout-allocations",
        abstract: "Heap allocations per published event (steady state, 4 async subscribers).",
        discussion: """
            A FanOut with 4 async subscriber tasks (capacity large enough that nothing \
            overflows) is warmed up, then --events publishes of a 64-byte InlineBytes \
            report are made as fast as possible while AllocationCounter counts the \
            malloc-family calls of the publishing thread. Subscribers wake and park \
            meanwhile; their own resumes run on other threads and are not counted. \
            Prints measure "allocations-per-event", impl "devif", unit "allocs", one line per run.
            """)

    @Option(help: "Publishes counted per run.") var events = 200_000
    @Option(help: "Publishes before counting starts.") var warmupEvents = 10_000
    @Option(help: "Measured runs (one sample line each).") var runs = 5

    func run() throws {
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
            Sample(measure: "allocations-per-event", impl: "devif",
                   value: Double(allocations) / Double(events), unit: "allocs",
                   note: "allocations=\(allocations) events=\(events) subscribers=\(subscribers) delivered=\(delivered) overflow-missed=\(missed) counted=publisher-thread").emit()
        }
    }
}

struct PublishLatency: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish-latency",
        abstract: "p99 time of one FanOut.publish with 4 live subscribers, with or without a stalled one.",
        discussion: """
            4 async subscriber tasks consume everything; with --stalled 1 a fifth \
            subscription is made and never read (its queue overflows on every publish, \
            which is the point). The publisher (main thread) publishes a 64-byte \
            InlineBytes report every --interval-ns (spinning to the deadline, the same \
            pacing with and without the stalled subscriber, so live subscribers keep \
            up) and times each publish with CLOCK_MONOTONIC. Prints measure \
            "publish-p99", impl "devif-stalled" or "devif-no-stalled", unit "ns", one \
            line per run (p50, p99.9 and max in the note).
            """)

    @Option(help: "0: no stalled subscriber; 1: one stalled subscriber.") var stalled = 0
    @Option(help: "Timed publishes per run.") var events = 200_000
    @Option(help: "Untimed publishes first.") var warmupEvents = 10_000
    @Option(help: "Pacing: one publish every this many ns.") var intervalNs = 5_000
    @Option(help: "Live subscribers' queue capacity.") var capacity = 4_096
    @Option(help: "Measured runs (one sample line each).") var runs = 5

    func validate() throws {
        guard stalled == 0 || stalled == 1 else { throw ValidationError("--stalled is 0 or 1") }
        guard events >= 100, runs >= 1, intervalNs >= 0 else { throw ValidationError("bad counts") }
    }

    func run() throws {
        for _ in 0..<runs {
            let fan = FanOut<Report64>()
            let latch = TaskLatch<SubscriberResult>()
            let live = 4
            for _ in 0..<live { consumeDevif(fan.subscribe(capacity: capacity), into: latch) }
            // Never iterated; kept alive until after the timed loop.
            let stalledSubscription = stalled == 1 ? fan.subscribe() : nil
            latch.waitStarted(live)
            var times = [Double](repeating: 0, count: events)
            var next = monotonicNanoseconds()
            for i in 0..<(warmupEvents + events) {
                // Pace by spinning to the deadline: sleeping would add the timer's slack.
                next += UInt64(intervalNs)
                while monotonicNanoseconds() < next {}
                let t0 = monotonicNanoseconds()
                fan.publish(.make(i))
                let t1 = monotonicNanoseconds()
                if i >= warmupEvents { times[i - warmupEvents] = Double(t1 - t0) }
            }
            fan.finish()
            let results = latch.waitFinished(live)
            withExtendedLifetime(stalledSubscription) {}
            let missed = results.reduce(UInt64(0)) { $0 + $1.missed }
            let p99 = percentile(times, 99)!
            let note = String(format: "p50=%.0f p99.9=%.0f max=%.0f", percentile(times, 50)!, percentile(times, 99.9)!, percentile(times, 100)!)
                + " events=\(events) interval-ns=\(intervalNs) live=\(live) live-overflow-missed=\(missed)"
            Sample(measure: "publish-p99", impl: stalled == 1 ? "devif-stalled" : "devif-no-stalled",
                   value: p99, unit: "ns", note: note).emit()
        }
    }
}

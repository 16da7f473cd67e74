import Dispatch
import Foundation
import Synchronization
import Testing
@testable import DevifCore

/// The publisher follows the subscriber list from chunk to chunk (16 slots each)
/// by an address that subscribers store when they go past a full chunk. This
/// grows the list from several threads while the publisher runs, and checks the
/// promise of `subscribe`: everything published after it returns arrives, in order.
@Suite("FanOutStressChunkGrowth")
struct FanOutStressChunkGrowthTests {
    typealias S = FanOutTestSupport

    /// What one subscriber saw, checked against the point where it joined.
    struct Seen: Sendable {
        var joinedAt = 0
        var first: Int?
        var last = -1
        var count = 0
        var problems: [String] = []
    }

    @Test(.timeLimit(.minutes(3)))
    func subscribersJoiningBeyondTheFirstChunkWhilePublishingGetEverythingAfterJoining() async throws {
        let underTSan = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil
        let total = underTSan ? 20_000 : 100_000
        let fan = FanOut<Int>()
        // Both sides read-modify-write this before acting, so the publisher's
        // increment for event `n` synchronises with a subscriber that read `n`
        // after its `subscribe` returned: events `n...` are published after it.
        let clock = Atomic<Int>(0)
        let threads = 4, perThread = 14   // 56 subscriptions: four chunks
        let tasks = Mutex<[Task<Seen, Never>]>([])
        let joined = DispatchSemaphore(value: 0)
        let published = DispatchSemaphore(value: 0)

        for t in 0..<threads {
            Thread {
                for k in 0..<perThread {
                    // Some churn, so slots in later chunks are freed and reused.
                    if k % 3 == 0 { fan.subscribe(capacity: 4).cancel() }
                    let sub = fan.subscribe(capacity: total)
                    let joinedAt = clock.add(0, ordering: .acquiringAndReleasing).oldValue
                    let task = Task { () -> Seen in
                        var seen = Seen(joinedAt: joinedAt)
                        for await d in sub {
                            guard case .event(let n) = d else {
                                seen.problems.append("overflow with capacity \(total)")
                                continue
                            }
                            if seen.first == nil { seen.first = n }
                            if seen.count > 0, n != seen.last + 1, seen.problems.count < 5 {
                                seen.problems.append("\(n) after \(seen.last)")
                            }
                            seen.last = n
                            seen.count += 1
                        }
                        return seen
                    }
                    tasks.withLock { $0.append(task) }
                    if k % 4 == t % 4 { usleep(200) }   // spread the joins over the run
                }
                joined.signal()
            }.start()
        }
        Thread {
            for n in 0..<total {
                _ = clock.add(1, ordering: .acquiringAndReleasing)
                fan.publish(n)
            }
            published.signal()
        }.start()

        for _ in 0..<threads { try await S.wait(joined, seconds: 60, "the subscribing threads") }
        try await S.wait(published, seconds: 120, "the publisher")
        fan.finish()
        let all = tasks.withLock { $0 }
        #expect(all.count == threads * perThread)
        for task in all {
            let seen = try await S.withTimeout(60, "a subscriber to end") { await task.value }
            #expect(seen.problems.isEmpty, "joined at \(seen.joinedAt): \(seen.problems)")
            // Everything from `joinedAt` on arrived (possibly some earlier events too).
            if seen.joinedAt < total {
                #expect(seen.first.map { $0 <= seen.joinedAt } == true && seen.last == total - 1,
                        "joined at \(seen.joinedAt): saw \(String(describing: seen.first))...\(seen.last)")
            }
        }
        #expect(fan.subscriberCount == 0)
    }
}

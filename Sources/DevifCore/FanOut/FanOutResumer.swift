import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// The part of a subscriber's queue that a parked async consumer leaves behind:
/// its continuation, and a link for the resumer's list. Non-generic so one
/// resumer serves every fan-out.
@usableFromInline
class ParkedTask: @unchecked Sendable {
    /// Written by the consumer before it publishes "parked" (release); read only
    /// by whoever wins the parked -> idle exchange (acquire), or by the resumer
    /// that winner handed it to. Resumed with `true` by the consumer itself,
    /// `false` by anyone else.
    @exclusivity(unchecked) var continuation: UnsafeContinuation<Bool, Never>?
    /// Next entry in `FanOutResumer`'s list; written by the publisher before it
    /// pushes this entry, read by the resumer after taking the list.
    @exclusivity(unchecked) fileprivate var nextToResume: UInt = 0
    /// How many resumes by other threads have fully returned. A continuation may
    /// be resumed before its task has suspended; the runtime then hands over
    /// through atomics that ThreadSanitizer cannot see, and the resumer may still
    /// be reading the continuation's context while the consumer runs on. The
    /// consumer waits for this count (acquire) before it parks again and reuses
    /// that memory, so the hand-over is explicit and visible to TSan.
    let externalResumesDone = Atomic<Int>(0)

    /// Resumes the parked consumer on behalf of another thread.
    func resumeExternally() {
        continuation.unsafelyUnwrapped.resume(returning: false)
        // Release: everything this thread did to the consumer's state, including
        // inside `resume`, happens-before the consumer's next park.
        externalResumesDone.add(1, ordering: .releasing)
    }
}

/// Resumes parked async consumers on behalf of the publisher.
///
/// Resuming a continuation enqueues a job on an executor, and the runtime's
/// enqueue allocates (and malloc may take an arena lock). Handing the resume to
/// this thread keeps the publishing path free of both: the publisher only
/// pushes onto a lock-free intrusive list and signals a semaphore. The cost is
/// one extra thread hop when a consumer was parked (never when it is busy).
final class FanOutResumer: Sendable {
    static let shared = FanOutResumer()

    /// A Treiber stack of retained `ParkedTask`s. Pushed by publishers (an entry
    /// is in the list at most once: it was parked, and stays suspended until this
    /// thread resumes it), emptied in one exchange by the resumer thread, so
    /// there is no ABA problem. Addresses as integers (0 = empty) so the atomic is Sendable.
    private let head = Atomic<UInt>(0)
    private let pending = DispatchSemaphore(value: 0)

    private init() {
        FanOut<Int>.startThread(named: "fanout-resumer") { [self] in
            while true { resumeAll() }
        }
    }

    /// Schedules `task`'s continuation to be resumed. Lock-free, allocation-free.
    func resume(_ task: ParkedTask) {
        // A retain, not an allocation: keeps the entry alive while listed.
        let entry = UInt(bitPattern: Unmanaged.passRetained(task).toOpaque())
        var old = head.load(ordering: .relaxed)
        while true {
            task.nextToResume = old
            // Release: `nextToResume` (and, transitively, the continuation we
            // acquired from the consumer) happen-before the resumer's acquire.
            let (done, current) = head.weakCompareExchange(expected: old, desired: entry,
                                                           ordering: .releasing)
            if done { break }
            old = current
        }
        pending.signal()
    }

    private func resumeAll() {
        pending.wait()
        // Acquire: pairs with the pushes' release.
        var next = head.exchange(0, ordering: .acquiring)
        while let raw = UnsafeRawPointer(bitPattern: next) {
            let task = Unmanaged<ParkedTask>.fromOpaque(raw).takeRetainedValue()
            // Read the link before resuming: once resumed, the consumer may park
            // again and be pushed again, rewriting it.
            next = task.nextToResume
            task.resumeExternally()
        }
    }
}

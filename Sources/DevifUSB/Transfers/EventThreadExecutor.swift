import Synchronization

/// A task executor whose thread is the handles' libusb event thread: a task
/// that prefers it (`Task(executorPreference:)`,
/// `withTaskExecutorPreference`) runs between two rounds of libusb's events,
/// and a transfer's completion that resumes it queues it on the same thread,
/// with no wake-up of another thread in between. Under emulation in the lab
/// an IN stream read as an AsyncSequence from a task on Swift's global
/// executor paid a wake-up of a worker thread per chunk (17,615 context
/// switches in 4 s against the push reader's 856) and reached about 0.79x
/// of raw libusb, where the push reader, whose handler runs on the event
/// thread, reached 0.93-0.99x.
///
/// Jobs run in the order they came, one batch between two rounds of events,
/// so a task that yields in a loop cannot starve libusb. A job that blocks
/// holds up every transfer of the process, as a push reader's handler does;
/// a synchronous transfer from it fails (``USBError/busy``: it would wait
/// for itself).
///
/// Until the handles' context exists (the first handle opened) and after it
/// failed, jobs go to Swift's global concurrent executor.
package final class EventThreadExecutor: TaskExecutor, @unchecked Sendable {  // state under `lock`; `runner` set once under it
    /// The one executor of the process (the handles' context is one too).
    package static let shared = EventThreadExecutor()

    private struct State {
        var jobs: [UnownedJob] = []
        /// Wakes the event thread: set when the context's thread starts.
        var wake: (@Sendable () -> Void)?
        var isCurrent: (@Sendable () -> Bool)?
    }
    private let lock = Mutex(State())
    /// Jobs queued: read by the event thread before it blocks in libusb.
    private let queued = Atomic<Int>(0)

    private init() {}

    /// The thread that runs the jobs, told how to wake it and how to know it.
    func attach(wake: @escaping @Sendable () -> Void, isCurrent: @escaping @Sendable () -> Bool) {
        lock.withLock { s in
            s.wake = wake
            s.isCurrent = isCurrent
        }
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let (attached, first, isCurrent, wake) = lock.withLock { s in
            guard let wake = s.wake else { return (false, false, nil as (@Sendable () -> Bool)?, nil as (@Sendable () -> Void)?) }
            s.jobs.append(job)
            return (true, s.jobs.count == 1, s.isCurrent, wake)
        }
        guard attached else { return globalConcurrentExecutor.enqueue(job) }
        queued.add(1, ordering: .releasing)
        // From the event thread it runs after this round; from elsewhere
        // the thread may be idle or blocked in libusb's poll.
        if first, let wake, isCurrent?() != true { wake() }
    }

    /// Whether jobs are waiting (the event thread does not block in libusb then).
    var hasJobs: Bool { queued.load(ordering: .acquiring) > 0 }

    /// Runs the jobs queued now (not those they queue: the next round's).
    /// On the event thread only.
    func runJobs(into batch: inout [UnownedJob]) {
        lock.withLock { swap(&$0.jobs, &batch) }
        guard !batch.isEmpty else { return }
        queued.subtract(batch.count, ordering: .relaxed)
        let me = asUnownedTaskExecutor()
        for job in batch { job.runSynchronously(on: me) }
        batch.removeAll(keepingCapacity: true)
    }
}

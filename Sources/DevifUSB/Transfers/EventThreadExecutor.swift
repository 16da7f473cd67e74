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
package final class EventThreadExecutor: TaskExecutor, @unchecked Sendable {  // all state under `lock`
    /// The one executor of the process (the handles' context is one too).
    package static let shared = EventThreadExecutor()

    /// The thread that runs the jobs: how to wake it and how to know it.
    private struct Runner {
        let wake: @Sendable () -> Void
        let isCurrent: @Sendable () -> Bool
    }
    private struct State {
        var jobs: [UnownedJob] = []
        /// Set when the handles' context starts its thread.
        var runner: Runner?
    }
    private let lock = Mutex(State())

    private init() {}

    /// The thread that runs the jobs, told how to wake it and how to know it.
    func attach(wake: @escaping @Sendable () -> Void, isCurrent: @escaping @Sendable () -> Bool) {
        lock.withLock { $0.runner = Runner(wake: wake, isCurrent: isCurrent) }
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let (runner, first) = lock.withLock { s -> (Runner?, Bool) in
            guard let runner = s.runner else { return (nil, false) }
            s.jobs.append(job)
            return (runner, s.jobs.count == 1)
        }
        guard let runner else { return globalConcurrentExecutor.enqueue(job) }
        // From the event thread it runs after this round; from elsewhere
        // the thread may be idle or blocked in libusb's poll.
        if first, !runner.isCurrent() { runner.wake() }
    }

    /// Whether jobs are waiting (the event thread does not block in libusb then).
    var hasJobs: Bool { lock.withLock { !$0.jobs.isEmpty } }

    /// Runs the jobs queued now (not those they queue: the next round's).
    /// On the event thread only.
    func runJobs(into batch: inout [UnownedJob]) {
        lock.withLock { swap(&$0.jobs, &batch) }
        guard !batch.isEmpty else { return }
        let me = asUnownedTaskExecutor()
        for job in batch { job.runSynchronously(on: me) }
        batch.removeAll(keepingCapacity: true)
    }
}

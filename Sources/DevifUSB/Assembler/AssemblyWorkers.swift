import DevifLinux
import Synchronization

/// The threads that make devices ready, one device per thread at a time.
///
/// Making a device ready mostly waits (for its node, its driver, a string
/// the device answers slowly), so a worker is a thread, not a task: threads
/// are made as work needs them, up to `limit`, and kept until `stop()` (the
/// first ones at the start: making a thread costs a plug's worth of time in
/// the lab VM). With more devices than `limit` at once, the rest wait their
/// turn in order. The threads hold their pool: `stop()` must be called.
final class AssemblyWorkers: Sendable {
    /// Makes a device ready and returns what hands the result on. The job
    /// counts as finished before the hand-over runs: handing on may apply
    /// the arrival in the pipeline in place (when it is idle), which is not
    /// assembly and should not make the next plug start another thread.
    typealias Job = @Sendable () -> Deliver
    typealias Deliver = @Sendable () -> Void

    let limit: Int
    private let jobs = WorkQueue<Job>()
    private struct State {
        var threads: [JoinableThread] = []
        /// Jobs submitted and not finished (queued or running).
        var unfinished = 0
        var stopped = false
    }
    private let state = Mutex(State())

    /// Threads made so far (kept until `stop()`).
    var threadCount: Int { state.withLock { $0.threads.count } }

    init(limit: Int = 16, ready: Int = 2) {
        self.limit = max(1, limit)
        state.withLock { s in
            for _ in 0..<min(ready, self.limit) {
                guard let thread = try? JoinableThread(name: "devif-assembly", { [self] in work() }) else { break }
                s.threads.append(thread)
            }
        }
    }

    /// Runs `job` on a worker. False (and `job` dropped) after `stop()`, or
    /// when no thread could be made and none runs.
    @discardableResult
    func submit(_ job: @escaping Job) -> Bool {
        state.withLock { s in
            guard !s.stopped else { return false }
            s.unfinished += 1
            if s.unfinished > s.threads.count, s.threads.count < limit,
               let thread = try? JoinableThread(name: "devif-assembly", { [self] in work() }) {
                s.threads.append(thread)
            }
            guard !s.threads.isEmpty else { s.unfinished -= 1; return false }
            return jobs.post(job)
        }
    }

    private func work() {
        while let job = jobs.next() {
            let deliver = job()
            state.withLock { $0.unfinished -= 1 }
            deliver()
        }
    }

    /// Drops the queued jobs and waits for the running ones to end (the
    /// caller makes them end soon: the source abandons every assembly).
    /// Idempotent.
    func stop() {
        let threads = state.withLock { s in
            s.stopped = true
            defer { s.threads = [] }
            return s.threads
        }
        jobs.close()
        for thread in threads { thread.join() }
    }
}

import DevifCore
import DevifLinux
import Dispatch
import Synchronization

/// Commits the pipeline's registry changes on a thread of its own, so a
/// commit (two fsyncs with the SQLite store) never holds up the next
/// event's publication. The pipeline hands it a burst at a time; what is
/// handed while a commit runs goes into the next one. Its thread holds it:
/// `stop()` must be called (the pipeline does, on stop and in deinit).
final class RegistryWriter: Sendable {
    private enum Item: Sendable {
        case intents([RegistryIntent])
        /// Signalled once everything before it is committed.
        case barrier(DispatchSemaphore)
    }
    /// Waited for at the first commit: the pipeline publishes meanwhile.
    private let registry: RegistryOpening
    private let queue = WorkQueue<Item>()
    private let thread = Mutex<JoinableThread?>(nil)
    /// The first commit failure, for the pipeline to say once.
    private let failure = Mutex<(error: RegistryError?, said: Bool)>((nil, false))

    init(registry: RegistryOpening) {
        self.registry = registry
        // Without a thread to spare, commits run on the caller's thread.
        let t = try? JoinableThread(name: "devif-reg-write") { [self] in run() }
        thread.withLock { $0 = t }
    }

    /// Queues `intents` for commit, in order.
    func commit(_ intents: [RegistryIntent]) {
        guard !intents.isEmpty else { return }
        if thread.withLock({ $0 == nil }) { write(intents); return }
        queue.post(.intents(intents))
    }

    /// Returns once every change queued before is committed (or failed).
    func flush() {
        guard thread.withLock({ $0 != nil }) else { return }
        let done = DispatchSemaphore(value: 0)
        if queue.post(.barrier(done)) { done.wait() }
    }

    /// The first commit failure, once; nil when there is none or it was taken.
    func takeFailure() -> RegistryError? {
        failure.withLock { f in
            guard let error = f.error, !f.said else { return nil }
            f.said = true
            return error
        }
    }

    /// Commits what is queued and ends the thread. Idempotent.
    func stop() {
        flush()
        queue.close()
        thread.withLock { t in defer { t = nil }; return t }?.join()
    }

    private func run() {
        while let first = queue.next() {
            var intents: [RegistryIntent] = [], barriers: [DispatchSemaphore] = []
            for item in [first] + queue.takeAll() {
                switch item {
                case .intents(let more): intents += more
                case .barrier(let done): barriers.append(done)
                }
            }
            write(intents)
            for done in barriers { done.signal() }
        }
    }

    private func write(_ intents: [RegistryIntent]) {
        guard !intents.isEmpty else { return }
        do { _ = try registry.registry.commit(intents) } catch {
            failure.withLock { if $0.error == nil { $0.error = error } }
        }
    }
}

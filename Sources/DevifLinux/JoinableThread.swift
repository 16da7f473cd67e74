import Glibc
import Synchronization

/// A pthread running one closure, which `join()` waits for (Foundation's
/// Thread cannot be joined, and a source's `stop()` must not return while
/// its thread may still call the sink).
public final class JoinableThread: @unchecked Sendable {  // `thread` is written once, in init, before use.
    private var thread = pthread_t()
    private let joined = Atomic<Bool>(false)

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts `run` on a new thread. Fails only when the process is out of
    /// threads or memory.
    public init(_ run: @escaping @Sendable () -> Void) throws(LinuxError) {
        let body = Unmanaged.passRetained(Body(run)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, body)
        if rc != 0 {
            Unmanaged<Body>.fromOpaque(body).release()
            throw LinuxError(code: rc, call: "pthread_create")
        }
    }

    /// Whether the caller is this thread.
    public var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }

    /// Waits for the thread to end; later calls return at once. Called from
    /// the thread itself, it detaches instead of deadlocking.
    public func join() {
        guard !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if isCurrent { pthread_detach(thread) } else { pthread_join(thread, nil) }
    }

    deinit {
        // Never joined: let the system reclaim it when it ends.
        if !joined.load(ordering: .acquiring) { pthread_detach(thread) }
    }
}

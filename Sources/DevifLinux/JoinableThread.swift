import DevifCore
import Glibc
import Synchronization

/// A pthread running one closure, which `join()` waits for (Foundation's
/// Thread cannot be joined, and a source's `stop()` must not return while
/// its thread may still call the sink).
public final class JoinableThread: @unchecked Sendable {  // `thread` is written once, in init, before use.
    private var thread = pthread_t()
    private let joined = Atomic<Bool>(false)

    private final class Body {
        let name: String
        let run: @Sendable () -> Void
        init(_ name: String, _ run: @escaping @Sendable () -> Void) {
            self.name = name
            self.run = run
        }
    }

    /// The stack of every such thread: 1 MiB, not glibc's 8 MiB. An 8 MiB
    /// stack is big enough for a transparent huge page, which the kernel
    /// (with THP "always", Debian's default) allocates and zeroes, 2 MiB at a
    /// time, at the thread's first touch: a few milliseconds per thread of
    /// `devif-usb list` in the lab VM. devif's threads run no deep
    /// recursion; a notice handler of the application runs on one too.
    public static let stackSize = 1 << 20

    /// Starts `run` on a new thread named `name` (what `top -H`, `ps -L`,
    /// `perf` and debuggers show; the kernel keeps its first 15 bytes).
    /// Fails only when the process is out of threads or memory.
    public init(name: String, _ run: @escaping @Sendable () -> Void) throws(LinuxError) {
        let body = Unmanaged.passRetained(Body(name, run)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, Self.stackSize)
        let rc = pthread_create(&thread, &attributes, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            // Otherwise it inherits its creator's name (a Dispatch worker's
            // "com.apple.root..." under Swift concurrency).
            nameCurrentThread(body.name)
            body.run()
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

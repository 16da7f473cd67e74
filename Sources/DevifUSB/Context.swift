import CLibUSB
import DevifLinux
import Glibc
import Synchronization

/// Owns one libusb context and the thread that handles its events. Nobody
/// outside ever pumps libusb's events: hotplug callbacks and asynchronous
/// transfers complete on this thread.
///
/// Order of shutdown matters to libusb: stop the event thread, then
/// `libusb_exit`. ``shutdown()`` does both and is idempotent; deinit calls it.
public final class USBContext: @unchecked Sendable {  // `raw` is immutable; libusb is thread-safe; the rest is atomic or locked.
    /// The `libusb_context *`. Valid until ``shutdown()``.
    let raw: OpaquePointer
    /// Whether libusb was told not to discover devices (the kernel-uevent mode).
    public let noDeviceDiscovery: Bool

    private let running = Flag()
    private let state = Mutex<(thread: JoinableThread?, exited: Bool)>((nil, false))
    /// The event thread's `pthread_self()`, 0 before it runs: a synchronous
    /// transfer started on that thread could never complete.
    private let eventThread = ThreadID()

    /// The process's context for handles (``USBDevice``), created with its
    /// event thread on first use and kept for the life of the process.
    public static func shared() throws(USBError) -> USBContext {
        try sharedContext.withLock { context throws(USBError) in
            if let context { return context }
            let created = try USBContext()
            do { try created.startEventThread() } catch {
                throw USBError(libusbCode: -99, operation: "starting the libusb event thread (\(error))")
            }
            context = created
            return created
        }
    }
    private static let sharedContext = Mutex<USBContext?>(nil)

    /// Whether the caller runs on this context's event thread (where
    /// completion handlers run).
    public var isEventThread: Bool { eventThread.isCurrent }

    /// Creates the context; its event thread starts with ``startEventThread()``.
    /// - Parameter noDeviceDiscovery: set `LIBUSB_OPTION_NO_DEVICE_DISCOVERY`
    ///   first (libusb then neither scans nor follows hotplug; process-wide).
    public init(noDeviceDiscovery: Bool = false) throws(USBError) {
        raw = try LibUSB.initContext(noDeviceDiscovery: noDeviceDiscovery)
        self.noDeviceDiscovery = noDeviceDiscovery
    }

    /// Starts the event thread (once; later calls do nothing). Separate from
    /// init so a hotplug callback can be registered with enumeration before
    /// any live event is dispatched.
    /// Throws only when no thread can be created.
    public func startEventThread() throws(LinuxError) {
        try state.withLock { s throws(LinuxError) in
            guard s.thread == nil, !s.exited else { return }
            running.value.store(true, ordering: .releasing)
            let ctx = LibUSBPointer(raw)
            s.thread = try JoinableThread { [running, eventThread] in
                eventThread.recordCurrent()
                while running.value.load(ordering: .acquiring) {
                    // A 1 s slice bounds how long a lost interrupt could delay stop.
                    do { try LibUSB.handleEvents(ctx.raw, milliseconds: 1000) } catch {
                        // Persistent failures (e.g. the poll fd went bad) must not spin.
                        usleep(10_000)
                    }
                }
            }
        }
    }

    /// Stops and joins the event thread, then calls `libusb_exit`.
    /// Idempotent. Everything using the context must be done with it.
    public func shutdown() {
        let (first, thread) = state.withLock { s -> (Bool, JoinableThread?) in
            guard !s.exited else { return (false, nil) }
            s.exited = true
            defer { s.thread = nil }
            return (true, s.thread)
        }
        guard first else { return }
        if let thread {
            running.value.store(false, ordering: .releasing)
            // Wakes the thread out of its poll; the flag stays set if it is
            // between two rounds, so the wake-up is never lost.
            LibUSB.interruptEventHandler(raw)
            thread.join()
        }
        LibUSB.exit(raw)
    }

    deinit { shutdown() }
}

/// A thread id a thread's closure can hold without holding its owner.
final class ThreadID: Sendable {
    let value = Atomic<UInt>(0)
    func recordCurrent() { value.store(UInt(pthread_self()), ordering: .relaxed) }
    var isCurrent: Bool {
        let id = value.load(ordering: .relaxed)
        return id != 0 && id == UInt(pthread_self())
    }
}

/// An atomic flag a thread's closure can hold without holding its owner.
final class Flag: Sendable {
    let value: Atomic<Bool>
    init(_ initial: Bool = false) { value = Atomic(initial) }
}

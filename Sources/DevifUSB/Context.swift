import CLibUSB
import DevifCore
import Dispatch
import DevifLinux
import Glibc
import Synchronization

/// Owns one libusb context and the thread that handles its events. Nobody
/// outside ever pumps libusb's events: hotplug callbacks and asynchronous
/// transfers complete on this thread.
///
/// The handles' context (``shared()``) runs its event thread **on demand**:
/// only while asynchronous work (async transfers, streams, readers) is in
/// flight. A synchronous transfer is pumped by its own caller
/// (``pump(until:)``), as `libusb_bulk_transfer` does: with a dedicated
/// thread in between, every synchronous transfer paid one thread wake-up,
/// which made a 4 KiB ping-pong 2.5x slower than raw libusb under emulation
/// (a C program with the same event thread was as slow as devif). libusb's
/// event lock keeps either arrangement correct when both run at once.
///
/// Order of shutdown matters to libusb: stop the event thread, then
/// `libusb_exit`. ``shutdown()`` does both and is idempotent; deinit calls it.
package final class USBContext: @unchecked Sendable {  // `raw` is immutable; libusb is thread-safe; the rest is atomic or locked.
    /// The `libusb_context *`. Valid until ``shutdown()``.
    let raw: OpaquePointer
    /// Whether libusb was told not to discover devices (the kernel-uevent mode).
    package let noDeviceDiscovery: Bool

    private let running = Flag()
    private let state = Mutex<(thread: JoinableThread?, exited: Bool)>((nil, false))
    /// Asynchronous work in flight; the on-demand event thread idles at 0.
    private let demand = Counter()
    private let onDemand = Flag()
    /// Wakes an idle on-demand event thread (signalled on 0 -> 1 and at shutdown).
    private let wake = DispatchSemaphore(value: 0)
    /// The event thread's `pthread_self()`, 0 before it runs: a synchronous
    /// transfer started on that thread could never complete.
    private let eventThread = ThreadID()
    /// Unit tests only: called on the on-demand event thread just before it
    /// blocks idle (after its last look for work). Unset, a load.
    package let beforeIdle = CallbackSlot<Void>()

    /// The process's context for handles (``USBDevice``), created with its
    /// event thread on first use and kept for the life of the process.
    package static func shared() throws(USBError) -> USBContext {
        try sharedContext.withLock { context throws(USBError) in
            if let context { return context }
            let created = try USBContext()
            do throws(LinuxError) { try created.startEventThread(onDemand: true) } catch {
                throw USBError(errno: error.code, like: LIBUSB_ERROR_OTHER.rawValue, operation: "starting the libusb event thread (\(error))")
            }
            let raw = LibUSBPointer(created.raw)
            EventThreadExecutor.shared.attach(wake: { [wake = created.wake] in
                wake.signal()
                LibUSB.interruptEventHandler(raw.raw)
            }, isCurrent: { [eventThread = created.eventThread] in eventThread.isCurrent })
            context = created
            return created
        }
    }
    private static let sharedContext = Mutex<USBContext?>(nil)

    /// Whether the caller runs on this context's event thread or inside a
    /// transfer's completion (which may also run on a thread pumping a
    /// synchronous transfer): where blocking on libusb would deadlock.
    package var isEventThread: Bool { eventThread.isCurrent || CompletionThread.isInside }

    /// Creates the context; its event thread starts with ``startEventThread()``.
    /// - Parameter noDeviceDiscovery: set `LIBUSB_OPTION_NO_DEVICE_DISCOVERY`
    ///   first (libusb then neither scans nor follows hotplug; process-wide).
    package init(noDeviceDiscovery: Bool = false) throws(USBError) {
        raw = try LibUSB.initContext(noDeviceDiscovery: noDeviceDiscovery)
        self.noDeviceDiscovery = noDeviceDiscovery
    }

    /// Starts the event thread (once; later calls do nothing). Separate from
    /// init so a hotplug callback can be registered with enumeration before
    /// any live event is dispatched.
    /// Throws only when no thread can be created.
    /// - Parameter onDemand: handle events only while ``beginAsync()`` /
    ///   ``endAsync()`` count work in flight (the handles' context); the
    ///   hotplug context keeps it false.
    package func startEventThread(onDemand: Bool = false) throws(LinuxError) {
        try state.withLock { s throws(LinuxError) in
            guard s.thread == nil, !s.exited else { return }
            running.value.store(true, ordering: .releasing)
            self.onDemand.value.store(onDemand, ordering: .releasing)
            let ctx = LibUSBPointer(raw)
            // The handles' transfers complete on "devif-usb-io"; a source's hotplug callbacks on "devif-hotplug".
            // The handles' thread also runs the tasks that prefer it.
            let executor = onDemand ? EventThreadExecutor.shared : nil
            s.thread = try JoinableThread(name: onDemand ? "devif-usb-io" : "devif-hotplug") {
                [running, eventThread, demand, wake, beforeIdle] in
                eventThread.recordCurrent()
                // Every callback on the handles' thread is a completion's.
                if onDemand { CompletionThread.markCurrentThread() }
                var batch: [UnownedJob] = []
                batch.reserveCapacity(16)
                while running.value.load(ordering: .acquiring) {
                    executor?.runJobs(into: &batch)
                    let jobs = executor?.hasJobs ?? false
                    if onDemand, demand.value.load(ordering: .acquiring) == 0, !jobs {
                        // Idle: leave libusb's event lock to synchronous callers.
                        beforeIdle.call(())
                        wake.wait()
                        continue
                    }
                    // A 1 s slice bounds how long a lost interrupt could delay
                    // stop; with jobs waiting, only what is ready now.
                    do { try LibUSB.handleEvents(ctx.raw, milliseconds: jobs ? 0 : 1000) } catch {
                        // Persistent failures (e.g. the poll fd went bad) must not spin.
                        usleep(10_000)
                    }
                }
            }
        }
    }

    /// Stops and joins the event thread, then calls `libusb_exit`.
    /// Idempotent. Everything using the context must be done with it.
    package func shutdown() {
        let (first, thread) = state.withLock { s -> (Bool, JoinableThread?) in
            guard !s.exited else { return (false, nil) }
            s.exited = true
            defer { s.thread = nil }
            return (true, s.thread)
        }
        guard first else { return }
        if let thread {
            running.value.store(false, ordering: .releasing)
            wake.signal()
            // Wakes the thread out of its poll; the flag stays set if it is
            // between two rounds, so the wake-up is never lost.
            LibUSB.interruptEventHandler(raw)
            thread.join()
        }
        LibUSB.exit(raw)
    }

    deinit { shutdown() }

    // MARK: Demand and pumping

    /// Counts one asynchronous transfer in flight (before its submission).
    func beginAsync() {
        if demand.value.wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue == 0,
           onDemand.value.load(ordering: .acquiring) {
            wake.signal()
        }
    }

    /// Ends ``beginAsync()`` (after the completion ran, or a failed submit).
    func endAsync() {
        let left = demand.value.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue
        // At 0 the event thread should leave its poll (and the event lock)
        // now, not at its next 1 s slice; from the event thread itself it
        // is about to return anyway.
        if left == 0, onDemand.value.load(ordering: .acquiring), !eventThread.isCurrent {
            LibUSB.interruptEventHandler(raw)
        }
    }

    /// Handles events on the calling thread until `waiter` is finished (a
    /// synchronous transfer's completion): no thread wake-up in between when
    /// nothing else is in flight; when the event thread is handling events,
    /// libusb makes this thread wait for it instead. Never from a completion.
    func pump(until waiter: TransferWaiter) {
        while !waiter.isFinished {
            // The waiter's flag lets libusb return at once when another
            // thread delivered the completion.
            LibUSB.handleEvents(raw, milliseconds: 1000, completed: waiter.completedFlag)
        }
    }
}

/// Marks the threads running a transfer completion (thread-specific data),
/// so that nothing blocks on libusb from inside one.
package enum CompletionThread {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    package static var isInside: Bool { pthread_getspecific(key) != nil }

    static func run(_ body: () -> Void) {
        // Marked for good (the handles' event thread): one lookup per
        // completion there instead of three.
        if pthread_getspecific(key) != nil { return body() }
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        defer { pthread_setspecific(key, nil) }
        body()
    }

    /// Marks the calling thread as running completions from now on.
    static func markCurrentThread() { pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1)) }
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

/// An atomic count a thread's closure can hold without holding its owner.
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

/// An atomic flag a thread's closure can hold without holding its owner.
final class Flag: Sendable {
    let value: Atomic<Bool>
    init(_ initial: Bool = false) { value = Atomic(initial) }
}

import DevifCore
import DevifLinux
import Glibc
import Synchronization

/// The hidraw source: every hidraw node (USB, Bluetooth, I2C, uhid, ...) as
/// a ``DeviceSnapshot`` of kind `.hid`, present ones at start and then live
/// arrivals and removals.
///
/// One monitor thread polls libudev's monitor (subsystem `hidraw`), or the
/// kernel's uevents when udevd is not running, beside an eventfd that
/// ``stop()`` signals. Details come from sysfs (the report descriptor and its
/// top-level collections, `HID_ID`/`HID_NAME`/`HID_UNIQ`/`HID_PHYS`, the USB
/// parent's port chain, strings and bcdDevice), from hidapi's enumeration
/// (hidapi has no hotplug API) where it is safe (hidapi 0.15.0 and later; see
/// `hidapiEnumerationIsSafe`), and whether this process may open the node.
/// One enumeration answers every node waiting at that moment, so a burst of
/// arrivals costs one or a few enumerations, not one per node (see
/// ``Options/enumerationInterval``).
package final class HIDSource: DeviceSource {
    package let name = "hid"
    private let options: Options
    private let state = Mutex<Running?>(nil)

    /// Tuning knobs (defaults suit production; tests may shorten them).
    package struct Options: Sendable {
        /// How long a node that is not ready (its HID device's uevent
        /// unreadable, or not listed by hidapi where hidapi is consulted) is
        /// retried before it is reported with what sysfs gave.
        package var resolveTimeout: Duration = .seconds(2)
        /// Pause between two attempts to resolve such a node.
        package var retryInterval: Duration = .milliseconds(100)
        /// Shortest time from the end of one of hidapi's enumerations to the
        /// start of the next (hidapi 0.15.0 and later). The first node after
        /// a quiet spell is looked up at once; nodes that arrive within this
        /// time of an enumeration wait for its end and share the next one.
        package var enumerationInterval: Duration = .milliseconds(100)
        /// Follow the kernel's uevents even when udevd runs (for tests of
        /// the fallback path).
        package var forceKernelUevents = false

        package init() {}
    }

    package init(options: Options = Options()) {
        self.options = options
    }

    deinit { stop() }

    private struct Running {
        let thread: JoinableThread
        let loop: MonitorLoop
    }

    /// Starts the monitor thread; see ``DeviceSource/start(_:)``. Throws when
    /// no monitor can be opened (neither libudev's nor the kernel's) or the
    /// thread cannot start. Starting a running source throws too.
    package func start(_ sink: @escaping @Sendable (SourceEvent) -> Void) throws(SourceError) {
        try state.withLock { (running: inout Running?) throws(SourceError) in
            guard running == nil else {
                throw SourceError(source: name, message: "already started; stop() it first")
            }
            let loop = try MonitorLoop(options: options, sink: sink)
            let thread: JoinableThread
            do throws(LinuxError) {
                thread = try JoinableThread(name: "devif-hid-src") { loop.run() }
            } catch {
                throw SourceError(source: "hid", message: "cannot start the monitor thread: \(error)", code: error.code)
            }
            running = Running(thread: thread, loop: loop)
        }
    }

    /// Stops and joins the monitor thread. Idempotent; no sink call begins
    /// after it returns (called from the sink itself, the thread makes no
    /// further calls and ends on its own).
    package func stop() {
        guard let running = state.withLock({ (running: inout Running?) in running.take() }) else { return }
        running.loop.requestStop()
        running.thread.join()
    }
}

/// Everything the monitor thread owns. Created in `start()`, then used only
/// by that thread except for `requestStop()` (an atomic and an eventfd).
private final class MonitorLoop: @unchecked Sendable {
    private let options: HIDSource.Options
    private let sink: @Sendable (SourceEvent) -> Void
    private let stopping = Atomic<Bool>(false)
    private let wake: EventFD
    private let udev: UdevContext?
    private let source: Monitor

    private enum Monitor {
        case udev(UdevMonitor)
        case kernel(KernelUeventMonitor)
    }

    /// Reported nodes: syspath -> the key their arrival carried.
    private var present: [String: String] = [:]
    /// Nodes being resolved (and retried until ready).
    private var pending: PendingNodes
    private var usingKernelUevents: Bool { if case .kernel = source { true } else { false } }

    init(options: HIDSource.Options, sink: @escaping @Sendable (SourceEvent) -> Void) throws(SourceError) {
        self.options = options
        self.sink = sink
        pending = PendingNodes(resolveTimeout: options.resolveTimeout, retryInterval: options.retryInterval,
                               enumerationInterval: options.enumerationInterval)
        do throws(LinuxError) {
            wake = try EventFD()
        } catch {
            throw SourceError(source: "hid", message: "cannot create an eventfd: \(error)", code: error.code)
        }
        udev = UdevContext()
        if !options.forceKernelUevents, udevIsRunning(), let udev {
            do {
                source = .udev(try UdevMonitor(context: udev))
                return
            } catch {
                // Fall through to the kernel's uevents, which need no udevd.
            }
        }
        do throws(LinuxError) {
            source = .kernel(try KernelUeventMonitor(subsystems: ["hidraw"]))
        } catch {
            throw SourceError(source: "hid", message: "cannot follow hidraw hotplug: \(error)", code: error.code)
        }
    }

    func requestStop() {
        stopping.store(true, ordering: .releasing)
        wake.signal()
    }

    private var isStopping: Bool { stopping.load(ordering: .acquiring) }

    private func emit(_ event: SourceEvent) {
        // Re-checked per call: stop() from inside the sink must end the calls.
        guard !isStopping else { return }
        sink(event)
    }

    func run() {
        if usingKernelUevents {
            emit(.notice(Notice(.degraded, "udevd is not running: following the kernel's uevents directly")))
        }
        // The monitor is open already, so nothing plugged from here on is
        // missed; a node seen by both is reported once (see handle(_:)).
        for change in enumerate() { handle(change, initial: true) }
        resolvePending()
        while !isStopping, pending.waitingForInitial, let next = pending.nextAttempt {
            waitForStop(until: next)
            resolvePending()
        }
        emit(.enumerated)
        while !isStopping {
            var fds = [pollfd(fd: wake.fileDescriptor, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: monitorDescriptor, events: Int16(POLLIN), revents: 0)]
            let timeout = pending.nextAttempt.map(Self.milliseconds(until:)) ?? -1
            do throws(LinuxError) {
                _ = try Syscalls.poll(&fds, timeoutMilliseconds: timeout)
            } catch {
                emit(.notice(Notice(.degraded, "\(error); hotplug stopped")))
                return
            }
            if isStopping { return }
            if fds[1].revents & Int16(POLLIN) != 0 { drainMonitor() }
            if fds[1].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                emit(.notice(Notice(.degraded, "the hotplug monitor failed; hotplug stopped")))
                return
            }
            resolvePending()
        }
    }

    private var monitorDescriptor: Int32 {
        switch source {
        case .udev(let monitor): monitor.fileDescriptor
        case .kernel(let monitor): monitor.fileDescriptor
        }
    }

    private func enumerate() -> [HidrawChange] {
        udev?.enumerateHidraw() ?? []
    }

    private func drainMonitor() {
        while !isStopping {
            switch source {
            case .udev(let monitor):
                switch monitor.receive() {
                case nil: return
                case .change(let change): handle(change, initial: false)
                case .overflow: rescan()
                }
            case .kernel(let monitor):
                let received: KernelUeventMonitor.Received?
                do throws(LinuxError) {
                    received = try monitor.receive()
                } catch {
                    emit(.notice(Notice(.degraded, "reading kernel uevents failed: \(error)")))
                    return
                }
                switch received {
                case nil: return
                case .overflow: rescan()
                case .uevent(let event):
                    let action: HidrawChange.Action
                    switch event.action {
                    case "add": action = .add
                    case "remove": action = .remove
                    default: continue
                    }
                    handle(HidrawChange(action: action, syspath: "/sys" + event.devpath,
                                        devnode: event.devtmpfsNode), initial: false)
                }
            }
        }
    }

    /// Queues an arrival (resolved by the next `resolvePending()`, together
    /// with every other node waiting then) or reports a removal.
    private func handle(_ change: HidrawChange, initial: Bool) {
        switch change.action {
        case .add:
            // Already reported (enumeration and monitor overlap); a node
            // already waiting is left as it is.
            guard present[change.syspath] == nil else { return }
            pending.add(change, now: .now, initial: initial)
        case .remove:
            if pending.remove(change.syspath) { return }
            if let key = present.removeValue(forKey: change.syspath) { emit(.removed(key: key)) }
        }
    }

    /// Resolves every waiting node that is due, with at most one of hidapi's
    /// enumerations for all of them, and reports those that are ready.
    private func resolvePending() {
        guard !isStopping else { return }
        let results = pending.resolveDue(
            now: .now, consultHIDAPI: hidapiEnumerationIsSafe,
            read: { HIDResolver.read(syspath: $0.syspath, devnode: $0.devnode) },
            enumerate: HIDAPIInfo.enumerateAll)
        // Counted before the arrivals go out, so whoever sees them sees the count.
        HIDAPIStatistics.countAnswered(results.count { $0.answeredByHIDAPI })
        for result in results {
            present[result.syspath] = result.snapshot.sourceKey
            if result.timedOut {
                emit(.notice(Notice(.device, "\(result.snapshot.devnode ?? result.syspath) was not ready within \(options.resolveTimeout) "
                    + "(its HID device's uevent could not be read, or hidapi did not list it); reporting what sysfs gave")))
            }
            emit(.arrived(result.snapshot))
        }
    }

    /// After lost events: report what went away and what came meanwhile.
    private func rescan() {
        let current = enumerate()
        let paths = Set(current.map(\.syspath))
        for (syspath, key) in present where !paths.contains(syspath) {
            present[syspath] = nil
            emit(.removed(key: key))
        }
        pending.keepOnly(paths)
        for change in current { handle(change, initial: false) }
    }

    /// Sleeps until `instant` or until stop() is requested.
    private func waitForStop(until instant: ContinuousClock.Instant) {
        var fds = [pollfd(fd: wake.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        _ = try? Syscalls.poll(&fds, timeoutMilliseconds: Self.milliseconds(until: instant))
    }

    private static func milliseconds(until instant: ContinuousClock.Instant) -> Int32 {
        let left = ContinuousClock.now.duration(to: instant)
        if left <= .zero { return 0 }
        return Int32(clamping: left.milliseconds + 1)
    }
}

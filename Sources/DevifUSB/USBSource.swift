import CLibUSB
import DevifCore
import DevifLinux
import Glibc
import Synchronization

/// The USB device source: every USB device (libusb's view), made ready by
/// the assembler and reported through one sink.
///
/// It owns a libusb context with its own event thread, a libusb hotplug
/// callback that only hands devices on, and an assembler thread that reads
/// descriptors, strings and access and calls the sink. Without udevd
/// (containers), libusb sees no hotplug; the source then follows the kernel's
/// own uevents and reads descriptors from sysfs, and says so once.
///
///     let usb = USBSource()
///     try usb.start { event in print(event) }   // arrivals, .enumerated, then live changes
///     ...
///     usb.stop()
public final class USBSource: DeviceSource {
    public let name = "usb"

    /// Tuning; the defaults suit normal use.
    public struct Options: Sendable {
        /// After `access(2)` allows the node, open it once to be sure (a
        /// container's device cgroup can forbid what the mode allows). Off by
        /// default: listing should not touch devices, and opening usbfs
        /// resumes a runtime-suspended one (it also made enumeration slower
        /// in the lab). The real open (a handle) reports the denial anyway.
        public var confirmAccessByOpening: Bool
        /// The timeout of each string descriptor request (used only for
        /// strings the kernel did not cache in sysfs).
        public var stringTimeout: Duration
        /// How long to wait for the kernel to finish a new device: its node
        /// `/dev/bus/usb/BBB/DDD` present and its driver bound (which settles
        /// the active configuration).
        public var readyWait: Duration
        /// Follow the kernel's uevents instead of libusb's hotplug: nil
        /// decides by whether udevd runs; true or false forces it (tests).
        public var followKernelUevents: Bool?

        /// Which devices may be asked for the MS OS 1.0 string 0xEE (the
        /// catalog's `[ms-os-1.0]` probe lines); nil: ``MSOSDescriptorSettings``.
        public var msOS10ProbeRules: [MSOS10ProbeRule]?
        /// Where probe answers are remembered (the manager's registry); nil:
        /// ``MSOSDescriptorSettings``.
        public var msOS10ProbeMemory: MSOS10ProbeMemory?

        public init(confirmAccessByOpening: Bool = false, stringTimeout: Duration = .milliseconds(500),
                    readyWait: Duration = .seconds(2), followKernelUevents: Bool? = nil,
                    msOS10ProbeRules: [MSOS10ProbeRule]? = nil, msOS10ProbeMemory: MSOS10ProbeMemory? = nil) {
            self.confirmAccessByOpening = confirmAccessByOpening
            self.stringTimeout = stringTimeout
            self.readyWait = readyWait
            self.followKernelUevents = followKernelUevents
            self.msOS10ProbeRules = msOS10ProbeRules
            self.msOS10ProbeMemory = msOS10ProbeMemory
        }
    }

    public let options: Options
    private let current = Mutex<USBSourceRun?>(nil)

    public init(options: Options = Options()) {
        self.options = options
    }

    /// Starts the source (see ``DeviceSource/start(_:)``). Throws, with one
    /// line saying what is missing, when this machine has no USB or libusb
    /// cannot start; throws if already started.
    public func start(_ sink: @escaping @Sendable (SourceEvent) -> Void) throws(SourceError) {
        try current.withLock { run throws(SourceError) in
            guard run == nil else { throw SourceError(source: name, message: "already started (call stop() first)") }
            run = try USBSourceRun(source: name, options: options, sink: sink)
        }
    }

    /// Stops the threads and releases libusb; no sink call begins after this
    /// returns (called from inside the sink, the current call is the last).
    /// Idempotent; the source may be started again.
    public func stop() {
        let run = current.withLock { run in
            defer { run = nil }
            return run
        }
        run?.stop()
    }

    deinit { stop() }
}

/// What the hotplug callback and the uevent monitor hand to the assembler.
enum USBWork: Sendable {
    /// libusb mode: a device arrived or left; each holds one device reference.
    case arrived(LibUSBPointer)
    case left(LibUSBPointer)
    /// Kernel mode: a `usb_device` was added (sysfs path below /sys) or removed.
    /// `fromWalk`: found by the initial sysfs walk, not announced by a uevent.
    case kernelAdded(devpath: String, fromWalk: Bool)
    case kernelRemoved(devnode: String)
    /// Kernel mode: uevents were lost; compare sysfs with what was reported.
    case rescan
    case notice(Notice)
    case enumerated
}

/// One start-to-stop lifetime of a USBSource.
final class USBSourceRun: @unchecked Sendable {  // immutable after init except the atomics and locked state
    let source: String
    let sink: @Sendable (SourceEvent) -> Void
    let context: USBContext
    let queue = WorkQueue<USBWork>()
    let assembler: USBAssembler
    let kernelMode: Bool
    /// Sink calls are allowed while this is set.
    let running = Flag(true)
    /// Set when stop() ran on the assembler thread: that thread then tears down.
    let teardownOnExit = Flag(false)
    private let stopped = Flag(false)

    private var hotplugHandle: libusb_hotplug_callback_handle?
    private var queueRetained: Unmanaged<WorkQueue<USBWork>>?
    private var assemblerThread: JoinableThread?
    private var monitorThread: JoinableThread?
    private var monitorWake: WakeBox?

    init(source: String, options: USBSource.Options, sink: @escaping @Sendable (SourceEvent) -> Void) throws(SourceError) {
        self.source = source
        self.sink = sink
        self.assembler = USBAssembler(options: options)
        guard Sysfs.exists("/sys/bus/usb") else {
            throw SourceError(source: source, message: "no USB on this machine (no /sys/bus/usb): USB devices are not listed; HID devices still are")
        }
        let present = Sysfs.list("/sys/bus/usb/devices").filter { !$0.contains(":") }
        if !present.isEmpty, !Sysfs.exists("/dev/bus/usb") {
            throw SourceError(source: source, message: "USB devices exist but /dev/bus/usb does not (in a container, bind-mount /dev/bus/usb): USB devices are not listed; HID devices still are")
        }
        kernelMode = options.followKernelUevents ?? !udevIsRunning()
        do {
            context = try USBContext(noDeviceDiscovery: kernelMode)
        } catch {
            throw SourceError(source: source, message: "libusb could not start: \(error)", code: error.libusbCode)
        }
        do {
            if kernelMode { try startKernelMode() } else { try startLibUSBMode() }
            assemblerThread = try JoinableThread { [self] in assemblerLoop() }
            try context.startEventThread()
        } catch let error as SourceError {
            abandon()
            throw error
        } catch {
            abandon()
            throw SourceError(source: source, message: "could not start: \(error)")
        }
    }

    // MARK: Starting

    private func startLibUSBMode() throws(SourceError) {
        guard LibUSB.hasHotplug else {
            throw SourceError(source: source, message: "this libusb has no hotplug support: USB devices are not listed; HID devices still are")
        }
        let retained = Unmanaged.passRetained(queue)
        queueRetained = retained
        // Registered with ENUMERATE before the event thread runs: the present
        // devices are queued here, in this thread, and every live event is
        // dispatched after them (a departure can never overtake its arrival).
        do {
            hotplugHandle = try LibUSB.registerHotplug(context.raw, enumerate: true, callback: { _, dev, event, user in
                guard let dev, let user else { return 0 }
                // libusb forbids synchronous libusb calls here: take a
                // reference and hand the device on, nothing else.
                let queue = Unmanaged<WorkQueue<USBWork>>.fromOpaque(user).takeUnretainedValue()
                _ = queue.postIfOpen {
                    LibUSB.ref(dev)
                    return event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED ? .arrived(LibUSBPointer(dev)) : .left(LibUSBPointer(dev))
                }
                return 0
            }, userData: retained.toOpaque())
        } catch {
            throw SourceError(source: source, message: "libusb hotplug registration failed: \(error)", code: error.libusbCode)
        }
        queue.post(.enumerated)
    }

    private func startKernelMode() throws(SourceError) {
        let monitor: KernelUeventMonitor
        let wake: WakeBox
        do {
            monitor = try KernelUeventMonitor(subsystems: ["usb"])
            wake = WakeBox(try EventFD())
        } catch {
            throw SourceError(source: source, message: "cannot follow the kernel's uevents: \(error)", code: error.code)
        }
        queue.post(.notice(Notice(.degraded, "udevd is not running: following the kernel's uevents directly")))
        // The monitor is open before the walk, so nothing falls in between;
        // duplicates are dropped by the assembler.
        let box = MonitorBox(monitor)
        monitorWake = wake
        do {
            monitorThread = try JoinableThread { [queue] in Self.monitorLoop(box.monitor, wake: wake, queue: queue) }
        } catch {
            throw SourceError(source: source, message: "cannot start the uevent thread: \(error)", code: error.code)
        }
        for devpath in Self.walkSysfs() { queue.post(.kernelAdded(devpath: devpath, fromWalk: true)) }
        queue.post(.enumerated)
    }

    /// Every USB device in sysfs as a devpath below /sys, in port-chain order.
    static func walkSysfs() -> [String] {
        let root = "/sys/bus/usb/devices"
        let names = Sysfs.list(root).filter { !$0.contains(":") && PortChain(parsing: $0) != nil }
            .sorted { PortChain(parsing: $0)! < PortChain(parsing: $1)! }
        return names.compactMap { name in
            guard let real = try? Syscalls.realpath("\(root)/\(name)"), real.hasPrefix("/sys/") else { return nil }
            return String(real.dropFirst(4))
        }
    }

    private static func monitorLoop(_ monitor: KernelUeventMonitor, wake: WakeBox, queue: WorkQueue<USBWork>) {
        var fds = [pollfd(fd: monitor.fileDescriptor, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wake.eventFD.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            guard (try? Syscalls.poll(&fds, timeoutMilliseconds: -1)) != nil else { usleep(10_000); continue }
            if fds[1].revents != 0 { return }
            while true {
                let received: KernelUeventMonitor.Received?
                do { received = try monitor.receive() } catch {
                    queue.post(.notice(Notice(.degraded, "reading the kernel's uevents failed (\(error)); USB changes may be missed")))
                    usleep(100_000)
                    break
                }
                guard let received else { break }
                switch received {
                case .overflow:
                    queue.post(.rescan)
                case .uevent(let event):
                    guard event["DEVTYPE"] == "usb_device" else { continue }
                    if event.action == "add" {
                        queue.post(.kernelAdded(devpath: event.devpath, fromWalk: false))
                    } else if event.action == "remove", let node = event.devtmpfsNode {
                        queue.post(.kernelRemoved(devnode: node))
                    }
                }
            }
        }
    }

    // MARK: Stopping

    func stop() {
        guard !stopped.value.exchange(true, ordering: .acquiringAndReleasing) else { return }
        running.value.store(false, ordering: .releasing)
        if let handle = hotplugHandle { LibUSB.deregisterHotplug(context.raw, handle) }
        for item in queue.close() { Self.release(item) }
        if let monitorThread {
            monitorWake?.eventFD.signal()
            monitorThread.join()
        }
        if let assemblerThread, assemblerThread.isCurrent {
            // Called from the sink: the assembler thread finishes the
            // teardown when the sink returns.
            teardownOnExit.value.store(true, ordering: .releasing)
            assemblerThread.join()  // detaches
            return
        }
        assemblerThread?.join()
        teardown()
    }

    /// After every thread that uses libusb is gone: the event thread, then
    /// libusb_exit, then the callback's reference to the queue.
    private func teardown() {
        context.shutdown()
        queueRetained?.release()
        queueRetained = nil
    }

    /// A failed start: nothing was reported yet.
    private func abandon() {
        running.value.store(false, ordering: .releasing)
        stopped.value.store(true, ordering: .releasing)
        if let handle = hotplugHandle { LibUSB.deregisterHotplug(context.raw, handle) }
        for item in queue.close() { Self.release(item) }
        monitorWake?.eventFD.signal()
        monitorThread?.join()
        assemblerThread?.join()
        teardown()
    }

    static func release(_ item: USBWork) {
        switch item {
        case .arrived(let dev), .left(let dev): LibUSB.unref(dev.raw)
        default: break
        }
    }

    // MARK: Assembling

    func emit(_ event: SourceEvent) {
        guard running.value.load(ordering: .acquiring) else { return }
        sink(event)
    }

    private func assemblerLoop() {
        var tracker = Tracker()
        while let item = queue.next() {
            if kernelMode { handleKernel(item, &tracker) } else { handleLibUSB(item, &tracker) }
        }
        for dev in tracker.devices.keys { LibUSB.unref(dev.raw) }
        tracker.devices = [:]
        if teardownOnExit.value.load(ordering: .acquiring) { teardown() }
    }

    struct Tracker {
        /// libusb mode: reported devices (holding a reference) and their keys.
        var devices: [LibUSBPointer: String] = [:]
        /// kernel mode: reported device nodes and their devpaths.
        var nodes: [String: String] = [:]
    }

    private func handleLibUSB(_ item: USBWork, _ t: inout Tracker) {
        switch item {
        case .arrived(let dev):
            if t.devices[dev] != nil { LibUSB.unref(dev.raw); return }  // enumerated and announced: once
            if cancelIfLeft(dev) { return }
            let raw: RawDevice
            do { raw = try RawDevice(libusbDevice: dev.raw) } catch {
                emit(.notice(Notice(.device, "a USB device on bus \(LibUSB.busNumber(dev.raw)) is skipped: its descriptors cannot be read (\(error))")))
                LibUSB.unref(dev.raw)
                return
            }
            let result = assembler.assemble(raw, opener: .libusb(dev.raw))
            if cancelIfLeft(dev) { return }  // gone while assembling: neither
            // Gone before it could be read, its departure not queued yet:
            // neither either (the departure finds nothing to report).
            if result.gone { LibUSB.unref(dev.raw); return }
            t.devices[dev] = result.snapshot.sourceKey
            report(result)
        case .left(let dev):
            if let key = t.devices.removeValue(forKey: dev) {
                emit(.removed(key: key))
                LibUSB.unref(dev.raw)
            }
            LibUSB.unref(dev.raw)
        case .enumerated: emit(.enumerated)
        case .notice(let text): emit(.notice(text))
        case .kernelAdded, .kernelRemoved, .rescan: break
        }
    }

    /// If `dev`'s departure is already queued, drops it, this arrival and any
    /// duplicate arrival (their references too), so neither is reported.
    private func cancelIfLeft(_ dev: LibUSBPointer) -> Bool {
        guard let left = queue.removeFirst(where: { if case .left(dev) = $0 { true } else { false } }) else { return false }
        Self.release(left)
        while let duplicate = queue.removeFirst(where: { if case .arrived(dev) = $0 { true } else { false } }) {
            Self.release(duplicate)
        }
        LibUSB.unref(dev.raw)
        return true
    }

    private func report(_ result: USBAssembler.Result) {
        let s = result.snapshot
        if !result.problems.isEmpty {
            emit(.notice(Notice(.device, "\(s.portChain.map(String.init(describing:)) ?? "?") \(hex4(s.vendorID)):\(hex4(s.productID)): "
                + result.problems.joined(separator: "; "))))
        }
        emit(.arrived(s))
    }

    private func handleKernel(_ item: USBWork, _ t: inout Tracker) {
        switch item {
        case .kernelAdded(let devpath, let fromWalk):
            guard let raw = readSysfsDevice(devpath) else { return }  // gone already
            let devnode = USBAssembler.devnode(bus: raw.bus, address: raw.address)
            if let known = t.nodes[devnode] {
                if known == devpath { return }  // walked and announced: once
                // The same node on another device: the old one's removal was lost.
                t.nodes[devnode] = nil
                emit(.removed(key: devnode))
            }
            if cancelIfRemoved(devnode) { return }
            let result = assembler.assemble(raw, opener: .wrap(context: context.raw))
            if cancelIfRemoved(devnode) || result.gone { return }
            // A walked device may have left (node removed) before its uevent
            // could be queued behind the walk: then report nothing.
            if fromWalk, !Sysfs.exists(devnode) { return }
            t.nodes[devnode] = devpath
            report(result)
        case .kernelRemoved(let devnode):
            if t.nodes.removeValue(forKey: devnode) != nil { emit(.removed(key: devnode)) }
        case .rescan:
            emit(.notice(Notice(.degraded, "kernel uevents were lost (socket buffer overflow): rescanning USB devices")))
            let present = Set(Self.walkSysfs())
            for (node, devpath) in t.nodes where !present.contains(devpath) || !Sysfs.exists(node) {
                t.nodes[node] = nil
                emit(.removed(key: node))
            }
            let known = Set(t.nodes.values)
            for devpath in Self.walkSysfs() where !known.contains(devpath) {
                handleKernel(.kernelAdded(devpath: devpath, fromWalk: true), &t)
            }
        case .enumerated: emit(.enumerated)
        case .notice(let text): emit(.notice(text))
        case .arrived, .left: Self.release(item)
        }
    }

    private func cancelIfRemoved(_ devnode: String) -> Bool {
        queue.removeFirst(where: { if case .kernelRemoved(devnode) = $0 { true } else { false } }) != nil
    }

    /// A device's descriptors and place from sysfs (no permission, no I/O);
    /// nil when it is gone or not a USB device directory.
    private func readSysfsDevice(_ devpath: String) -> RawDevice? {
        do {
            return try RawDevice(sysfsDevpath: devpath)
        } catch {
            emit(.notice(Notice(.device, "\(Sysfs.name(of: devpath)): skipped: its descriptors in sysfs are unreadable (\(error))")))
            return nil
        }
    }
}

/// The kernel monitor, handed to its one thread.
private final class MonitorBox: @unchecked Sendable {  // used by the monitor thread only
    let monitor: KernelUeventMonitor
    init(_ monitor: KernelUeventMonitor) { self.monitor = monitor }
}

/// The monitor thread's wake-up, shared with stop().
final class WakeBox: Sendable {
    let eventFD: EventFD
    init(_ eventFD: consuming EventFD) { self.eventFD = eventFD }
}

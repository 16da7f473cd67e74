import CLibUSB
import DevifCore
import DevifLinux
import Glibc
import Synchronization

/// The USB device source: every USB device (libusb's view), made ready by
/// the assembler and reported through one sink.
///
/// It owns a libusb context with its own event thread, a libusb hotplug
/// callback, workers that make each device ready (descriptors, strings,
/// access) side by side, so a slow device holds up no other, and one book
/// (under a lock) that keeps the order per device: the callback records an
/// announcement and hands the device to a worker, the worker records its
/// result and calls the sink, each on its own thread, one at a time. A
/// thread of the source's own takes what comes through its queue (the
/// enumeration, the kernel's uevents, `.enumerated`, notices). A device that
/// leaves before it is ready is still reported
/// (``DeviceSnapshot/leftBeforeReady``), then removed. Without udevd
/// (containers), libusb sees no hotplug; the source then follows the kernel's
/// own uevents and reads descriptors from sysfs, and says so once.
///
///     let usb = USBSource()
///     try usb.start { event in print(event) }   // arrivals, .enumerated, then live changes
///     ...
///     usb.stop()
package final class USBSource: DeviceSource {
    package let name = "usb"

    /// Tuning; the defaults suit normal use.
    package struct Options: Sendable {
        /// After `access(2)` allows the node, open it once to be sure (a
        /// container's device cgroup can forbid what the mode allows). Off by
        /// default: listing should not touch devices, and opening usbfs
        /// resumes a runtime-suspended one (it also made enumeration slower
        /// in the lab). The real open (a handle) reports the denial anyway.
        package var confirmAccessByOpening: Bool
        /// The timeout of each string descriptor request (used only for
        /// strings the kernel did not cache in sysfs).
        package var stringTimeout: Duration
        /// How long to wait for the kernel to finish a new device: its node
        /// `/dev/bus/usb/BBB/DDD` present and its driver bound (which settles
        /// the active configuration).
        package var readyWait: Duration
        /// Follow the kernel's uevents instead of libusb's hotplug: nil
        /// decides by whether udevd runs; true or false forces it (tests).
        package var followKernelUevents: Bool?
        /// False: report the devices present at start (read from sysfs, as
        /// without udevd), then `.enumerated`, and follow nothing after: no
        /// hotplug callback, no uevent thread, no udev scan. For a listing.
        package var followChanges = true

        /// Which devices may be asked for the MS OS 1.0 string 0xEE (the
        /// catalog's `[ms-os-1.0]` probe lines); nil: ``MSOSDescriptorSettings``.
        package var msOS10ProbeRules: [MSOS10ProbeRule]?
        /// Where probe answers are remembered (the manager's registry); nil:
        /// ``MSOSDescriptorSettings``.
        package var msOS10ProbeMemory: MSOS10ProbeMemory?

        package init(confirmAccessByOpening: Bool = false, stringTimeout: Duration = .milliseconds(500),
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

    package let options: Options
    private let current = Mutex<USBSourceRun?>(nil)

    package init(options: Options = Options()) {
        self.options = options
    }

    /// Starts the source (see ``DeviceSource/start(_:)``). Throws, with one
    /// line saying what is missing, when this machine has no USB or libusb
    /// cannot start; throws if already started.
    package func start(_ sink: @escaping @Sendable (SourceEvent) -> Void) throws(SourceError) {
        try current.withLock { run throws(SourceError) in
            guard run == nil else { throw SourceError(source: name, message: "already started (call stop() first)") }
            run = try USBSourceRun(source: name, options: options, sink: sink)
        }
    }

    /// Stops the threads and releases libusb; no sink call begins after this
    /// returns (called from inside the sink, the current call is the last).
    /// Idempotent; the source may be started again.
    package func stop() {
        let run = current.withLock { run in
            defer { run = nil }
            return run
        }
        run?.stop()
    }

    deinit { stop() }
}

/// What the hotplug callback, the uevent monitor and the workers hand to the
/// source's book (directly, or through the source's thread).
enum USBWork: Sendable {
    /// libusb mode: a device arrived or left.
    case arrived(USBDeviceReference)
    case left(USBDeviceReference)
    /// Kernel mode: a `usb_device` was added (sysfs path below /sys) or removed.
    /// `announced`: what its uevent told (nil when found by the initial sysfs
    /// walk, not announced by a uevent).
    case kernelAdded(devpath: String, announced: DeviceSnapshot?)
    case kernelRemoved(devnode: String)
    /// Kernel mode: uevents were lost; compare sysfs with what was reported.
    case rescan
    /// A worker has made a device ready (libusb mode).
    case assembled(USBDeviceReference, USBAssembler.Result)
    /// A worker has made a device ready (kernel mode: its node).
    case kernelAssembled(devnode: String, USBAssembler.Result, fromWalk: Bool)
    case notice(Notice)
    case enumerated
    /// A device to make ready on the source's thread, outside the book: no
    /// worker thread could be had (the book's holder may be libusb's event
    /// thread, where a device must not be opened).
    case readyHere(@Sendable () -> USBWork)
}

/// One start-to-stop lifetime of a USBSource.
final class USBSourceRun: @unchecked Sendable {  // immutable after init except the atomics and locked state
    let source: String
    let sink: @Sendable (SourceEvent) -> Void
    let context: USBContext
    let queue = WorkQueue<USBWork>()
    let assembler: USBAssembler
    /// Made once libusb has started: every later failure stops them (abandon()).
    let workers: AssemblyWorkers
    let kernelMode: Bool
    /// Sink calls are allowed while this is set.
    let running = Flag(true)
    /// Set when stop() ran on the source thread: that thread then tears down.
    let teardownOnExit = Flag(false)
    private let stopped = Flag(false)

    /// The book of every device, taken by one thread at a time: the hotplug
    /// callback (on libusb's event thread), a worker with its result, the
    /// source's thread. Its holder, so that stop() from inside the sink knows.
    private let book = Mutex(LoopState())
    private let bookHolder = Atomic<UInt>(0)

    private var hotplugHandle: libusb_hotplug_callback_handle?
    private var selfRetained: Unmanaged<USBSourceRun>?
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
        kernelMode = !options.followChanges || (options.followKernelUevents ?? !udevIsRunning())
        do {
            context = try USBContext(noDeviceDiscovery: kernelMode)
        } catch {
            throw SourceError(source: source, message: "libusb could not start: \(error)", code: error.libusbCode)
        }
        // A one-off listing reads devices that are ready already (sysfs, and
        // a device opened only for MS OS descriptors): two workers, not a
        // thread per device, which costs more than the reading in the VM.
        workers = options.followChanges ? AssemblyWorkers() : AssemblyWorkers(limit: 2)
        do {
            if !options.followChanges { startWalkOnly() } else if kernelMode { try startKernelMode() } else { try startLibUSBMode() }
            assemblerThread = try JoinableThread(name: "devif-usb-src") { [self] in assemblerLoop() }
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
        // Released by teardown(), once libusb's event thread is gone.
        let retained = Unmanaged.passRetained(self)
        selfRetained = retained
        // Registered with ENUMERATE before the event thread runs: the present
        // devices are booked here, in this thread, and every live event is
        // dispatched after them (a departure can never overtake its arrival).
        do {
            hotplugHandle = try LibUSB.registerHotplug(context.raw, enumerate: true, callback: { _, dev, event, user in
                guard let dev, let user else { return 0 }
                // No synchronous libusb call here (libusb forbids them): the
                // book reads the descriptors libusb holds and hands the device
                // to a worker, without a hop through the source's thread.
                let run = Unmanaged<USBSourceRun>.fromOpaque(user).takeUnretainedValue()
                run.announce {
                    let device = USBDeviceReference.retaining(dev)
                    return event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED ? .arrived(device) : .left(device)
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
            monitorThread = try JoinableThread(name: "devif-uevents") { [queue] in Self.monitorLoop(box.monitor, wake: wake, queue: queue) }
        } catch {
            throw SourceError(source: source, message: "cannot start the uevent thread: \(error)", code: error.code)
        }
        for devpath in Self.walkSysfs() { queue.post(.kernelAdded(devpath: devpath, announced: nil)) }
        queue.post(.enumerated)
    }

    /// The present devices only (``USBSource/Options/followChanges`` false).
    private func startWalkOnly() {
        for devpath in Self.walkSysfs() { queue.post(.kernelAdded(devpath: devpath, announced: nil)) }
        queue.post(.enumerated)
    }

    /// Every USB device in sysfs as a devpath below /sys, in port-chain order.
    static func walkSysfs() -> [String] {
        let root = "/sys/bus/usb/devices"
        // Each name parsed once, not in every comparison.
        let names = Sysfs.list(root).filter { !$0.contains(":") }
            .compactMap { name in PortChain(parsing: name).map { (name, $0) } }
            .sorted { $0.1 < $1.1 }.map(\.0)
        return names.compactMap { name in
            guard let real = Sysfs.canonical("\(root)/\(name)"), real.hasPrefix("/sys/") else { return nil }
            return String(real.dropFirst(4))
        }
    }

    /// What a `usb_device` add uevent tells: ids (PRODUCT), class (TYPE),
    /// bus and address and the port chain (its devpath). Reported as is if
    /// the device is gone before sysfs could be read.
    static func announcedSnapshot(_ event: Uevent) -> DeviceSnapshot? {
        guard let product = event["PRODUCT"]?.split(separator: "/").compactMap({ UInt16($0, radix: 16) }), product.count == 3,
              let bus = event["BUSNUM"].flatMap({ UInt8($0) }), let address = event["DEVNUM"].flatMap({ UInt8($0) }),
              let chain = PortChain(parsing: Sysfs.name(of: event.devpath)), chain.bus == bus
        else { return nil }
        let type = event["TYPE"]?.split(separator: "/").compactMap { UInt8($0) }
        return DeviceSnapshot(
            kind: .usb, portChain: chain, deviceAddress: address, vendorID: product[0], productID: product[1],
            bcdDevice: product[2], deviceClass: type.flatMap { $0.count == 3 ? ClassTriple($0[0], $0[1], $0[2]) : nil },
            devnode: USBAssembler.devnode(bus: bus, address: address))
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
                        queue.post(.kernelAdded(devpath: event.devpath, announced: Self.announcedSnapshot(event)))
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
        // Called from inside the sink (which holds the book): that call is
        // the last one, and this thread may be one that the teardown waits
        // for (libusb's event thread, a worker): the source's thread tears
        // down once it ends, and nothing is waited for here.
        let fromSink = bookHolder.load(ordering: .acquiring) == Self.threadID
        if fromSink { teardownOnExit.value.store(true, ordering: .releasing) }
        if let handle = hotplugHandle { LibUSB.deregisterHotplug(context.raw, handle) }
        queue.close()
        monitorWake?.eventFD.signal()
        // Not joined from the sink: each JoinableThread lets its thread go when it ends.
        if fromSink { return }
        // A sink call in progress on another thread ends before this returns;
        // later ones see `running` false.
        book.withLock { _ in }
        monitorThread?.join()
        assemblerThread?.join()
        teardown()
    }

    /// After every thread that uses libusb is gone: the event thread, then
    /// libusb_exit, then the callback's reference to this run.
    private func teardown() {
        context.shutdown()
        selfRetained?.release()
        selfRetained = nil
    }

    /// A failed start: nothing was reported yet.
    private func abandon() {
        running.value.store(false, ordering: .releasing)
        stopped.value.store(true, ordering: .releasing)
        if let handle = hotplugHandle { LibUSB.deregisterHotplug(context.raw, handle) }
        queue.close()
        monitorWake?.eventFD.signal()
        monitorThread?.join()
        assemblerThread?.join()
        // The devices booked by the enumeration, if the thread never ran.
        closeBook()
        teardown()
    }

    // MARK: Assembling

    func emit(_ event: SourceEvent) {
        guard running.value.load(ordering: .acquiring) else { return }
        sink(event)
    }

    /// The source's thread: takes what comes through the queue (the kernel's
    /// uevents, `.enumerated`, notices, a result made ready without a
    /// worker) into the book, in order.
    private func assemblerLoop() {
        while let item = queue.next() {
            let work = if case .readyHere(let job) = item { job() } else { item }
            withBook { t in
                handle(work, &t)
                // Every announcement queued so far is booked: later ones
                // come straight into the book, after them.
                if !t.live, queue.isEmpty { t.live = true }
            }
        }
        closeBook()
        if teardownOnExit.value.load(ordering: .acquiring) { teardown() }
    }

    /// The hotplug callback's announcement or departure: into the book on
    /// this thread once the source's thread has booked what the enumeration
    /// queued (so nothing overtakes it); until then, queued behind it. So
    /// the enumeration's calls (on the thread in `USBSource.start`, which
    /// holds its lock) find the book free: no worker has anything yet, and
    /// none holds the book while its sink call waits for that start to end.
    func announce(_ make: () -> USBWork) {
        withBook { t in
            guard !t.closed else { return }
            if t.live { handle(make(), &t) } else { queue.post(make()) }
        }
    }

    /// A worker's result into the book on this thread, unless the source
    /// has stopped: then `make` is not called.
    func direct(_ make: () -> USBWork) {
        withBook { t in
            guard !t.closed else { return }
            handle(make(), &t)
        }
    }

    private func withBook(_ body: (inout LoopState) -> Void) {
        book.withLock { t in
            bookHolder.store(Self.threadID, ordering: .releasing)
            defer { bookHolder.store(0, ordering: .releasing) }
            body(&t)
        }
    }

    private static var threadID: UInt { UInt(pthread_self()) }

    /// Ends the book: running assemblies are abandoned, later work is
    /// dropped, the workers end, and the device references go before libusb
    /// does. Idempotent.
    private func closeBook() {
        let state = book.withLock { t -> LoopState? in
            guard !t.closed else { return nil }
            t.usbAssemblies.abandonAll()
            t.kernelAssemblies.abandonAll()
            defer { t = LoopState(); t.closed = true }
            return t
        }
        workers.stop()
        withExtendedLifetime(state) {}
    }

    private struct LoopState {
        /// Set when the source stops: nothing more is booked.
        var closed = false
        /// Set once the queue has run empty: the hotplug callback then books
        /// directly.
        var live = false
        /// libusb mode: devices by libusb device.
        var usb = AssemblyBook<USBDeviceReference>()
        /// Kernel mode: devices by node, and each present node's devpath.
        var kernel = AssemblyBook<String>()
        var nodes: [String: String] = [:]
        /// Each mode's assemblies, by the key its book uses (typed: an
        /// AnyHashable key cost a dynamic cast per use, seen in `perf`).
        var usbAssemblies = Assemblies<USBDeviceReference>()
        var kernelAssemblies = Assemblies<String>()
    }

    private struct Assemblies<Key: Hashable> {
        /// Descriptors read at the announcement, until a worker takes them.
        var toAssemble: [Key: (raw: RawDevice, fromWalk: Bool)] = [:]
        /// The abandon flag of each assembly running.
        var abandons: [Key: Flag] = [:]

        /// Tells every running assembly to give up (the source is stopping).
        func abandonAll() {
            for flag in abandons.values { flag.value.store(true, ordering: .releasing) }
        }
    }

    private func handle(_ item: USBWork, _ t: inout LoopState) {
        switch item {
        case .arrived(let device):
            guard !t.usb.contains(device) else { return }  // enumerated and announced: once
            let raw: RawDevice
            do { raw = try RawDevice(libusbDevice: device.raw) } catch {
                emit(.notice(Notice(.device, "a USB device on bus \(LibUSB.busNumber(device.raw)) is skipped: its descriptors cannot be read (\(error))")))
                return
            }
            t.usbAssemblies.toAssemble[device] = (raw, false)
            perform(t.usb.announced(device, known: USBAssembler.known(raw)), &t)
        case .left(let device):
            perform(t.usb.left(device), &t)
        case .assembled(let device, let result):
            t.usbAssemblies.abandons[device] = nil
            perform(t.usb.assembled(device, result), &t)
        case .kernelAdded(let devpath, let announced):
            kernelAdded(devpath, announced: announced, &t)
        case .kernelRemoved(let devnode):
            t.nodes[devnode] = nil
            perform(t.kernel.left(devnode), &t)
        case .kernelAssembled(let devnode, let result, let fromWalk):
            t.kernelAssemblies.abandons[devnode] = nil
            // Walked, then gone before it was read: no uevent announced it,
            // and its removal may have passed before the walk: report nothing.
            if fromWalk, result.gone {
                t.nodes[devnode] = nil
                perform(t.kernel.forget(devnode), &t)
            } else {
                perform(t.kernel.assembled(devnode, result), &t)
            }
        case .rescan:
            emit(.notice(Notice(.degraded, "kernel uevents were lost (socket buffer overflow): rescanning USB devices")))
            let walked = Self.walkSysfs()
            let present = Set(walked)
            for (node, devpath) in t.nodes where !present.contains(devpath) || !Sysfs.exists(node) {
                t.nodes[node] = nil
                perform(t.kernel.left(node), &t)
            }
            let known = Set(t.nodes.values)
            for devpath in walked where !known.contains(devpath) { kernelAdded(devpath, announced: nil, &t) }
        case .enumerated:
            if kernelMode { perform(t.kernel.enumerationEnded(), &t) } else { perform(t.usb.enumerationEnded(), &t) }
        case .notice(let notice):
            emit(.notice(notice))
        case .readyHere(let job):
            handle(job(), &t)  // (the loop runs these outside the book)
        }
    }

    private func kernelAdded(_ devpath: String, announced: DeviceSnapshot?, _ t: inout LoopState) {
        guard let raw = readSysfsDevice(devpath) else {
            // Gone before it could be read: a uevent's device is reported
            // with what the uevent said (its removal follows); a walked one
            // was never announced, so nothing.
            if let announced, let node = announced.devnode, !t.kernel.contains(node) {
                t.nodes[node] = devpath
                perform(t.kernel.announcedGone(node, known: announced), &t)
            }
            return
        }
        let devnode = USBAssembler.devnode(bus: raw.bus, address: raw.address)
        if let known = t.nodes[devnode] {
            if known == devpath { return }  // walked and announced: once
            // The same node on another device: the old one's removal was lost.
            t.nodes[devnode] = nil
            perform(t.kernel.left(devnode), &t)
        }
        t.nodes[devnode] = devpath
        t.kernelAssemblies.toAssemble[devnode] = (raw, announced == nil)
        perform(t.kernel.announced(devnode, known: USBAssembler.known(raw)), &t)
    }

    private func perform(_ steps: [AssemblyBook<USBDeviceReference>.Step], _ t: inout LoopState) {
        let assembler = assembler
        perform(steps, &t.usbAssemblies) { device, raw, _, abandoned in
            .assembled(device, assembler.assemble(raw, opener: .libusb(device.raw), abandoned: abandoned))
        }
    }

    private func perform(_ steps: [AssemblyBook<String>.Step], _ t: inout LoopState) {
        let assembler = assembler, context = LibUSBPointer(context.raw)
        perform(steps, &t.kernelAssemblies) { devnode, raw, fromWalk, abandoned in
            .kernelAssembled(devnode: devnode, assembler.assemble(raw, opener: .wrap(context: context.raw), abandoned: abandoned),
                             fromWalk: fromWalk)
        }
    }

    /// Emits, starts and abandons as the book says; `job` makes one device
    /// ready, and the worker takes its result into the book.
    private func perform<Key: Hashable & Sendable>(
        _ steps: [AssemblyBook<Key>.Step], _ t: inout Assemblies<Key>,
        job: @escaping @Sendable (Key, RawDevice, _ fromWalk: Bool, _ abandoned: Flag) -> USBWork
    ) {
        for step in steps {
            switch step {
            case .emit(let event):
                emit(event)
            case .assemble(let key):
                guard let (raw, fromWalk) = t.toAssemble.removeValue(forKey: key) else { continue }
                let abandoned = Flag()
                t.abandons[key] = abandoned
                let submitted = workers.submit { [self] in
                    let result = job(key, raw, fromWalk, abandoned)
                    return { [self] in direct { result } }
                }
                // No worker thread to be had: made ready in turn on the
                // source's thread.
                if !submitted { queue.post(.readyHere { job(key, raw, fromWalk, abandoned) }) }
            case .abandon(let key):
                t.abandons.removeValue(forKey: key)?.value.store(true, ordering: .releasing)
            }
        }
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

// The burst row (issue 17): N gadgets plugged at once; per device, devif's
// arrival (publish time) after a raw libusb hotplug callback in this same
// process, which hears of each device as devif's own USB source does.
import ArgumentParser
import CLibUSB
import Devif
import Foundation
import Glibc
import Synchronization

struct BurstArrivalBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "burst-arrival",
        abstract: "Milliseconds from a raw libusb hotplug callback to devif's arrival, for N gadgets plugged at once.",
        discussion: """
            Plugs every gadget GADGET-PREFIX00 ... on dummy_udc.0 ... at once (one UDC write \
            each, in a loop), --count times, unplugging them between bursts. Per burst it \
            prints two samples: the median and the 95th percentile over the devices of the \
            time from this process's own libusb hotplug callback to devif's publication.
            """)
    @Option(help: "The gadgets' configfs folders without their two-digit number, e.g. /sys/kernel/config/usb_gadget/devlab-bb.")
    var gadgetPrefix: String
    @Option(help: "How many gadgets (numbered 00 on, gadget k on dummy_udc.k).") var gadgets = 24
    @OptionGroup var device: DeviceOptions
    @Option(help: "Bursts to measure.") var count = 5
    @Option(help: "The samples' measure: NAME (the median) and NAME-p95; plug-lag for the single-plug row (--gadgets 1).")
    var measure = "burst-lag"

    func run() async throws {
        let rig = try await ArrivalRig(device, gadgetPrefix: gadgetPrefix, gadgets: gadgets)
        defer { rig.stop() }
        let (callbacks, recorder, udcFiles) = (rig.callbacks, rig.recorder, rig.udcFiles)
        func waitUntil(_ what: String, _ done: @escaping @Sendable () -> Bool) async throws {
            guard try await rig.changes.wait(for: .seconds(60), until: done) else {
                throw BenchFailure("burst-arrival: \(what) within 60 s")
            }
        }
        for _ in 0..<count {
            rig.reset()
            for (k, file) in udcFiles.enumerated() { try writeUDCFile(file, "dummy_udc.\(k)") }
            try await waitUntil("\(gadgets) arrivals") { recorder.arrivals.count >= gadgets && callbacks.count >= gadgets }
            let lags = recorder.lags(after: callbacks.arrivals)
            guard lags.count == gadgets else { throw BenchFailure("burst-arrival: \(lags.count) of \(gadgets) arrivals matched libusb's callbacks") }
            Sample(measure: measure, impl: "devif", value: percentile(lags, 50)!, unit: "ms", note: "\(gadgets) devices, median").emit()
            Sample(measure: measure + "-p95", impl: "devif", value: percentile(lags, 95)!, unit: "ms", note: "\(gadgets) devices, p95").emit()
            for file in udcFiles { try writeUDCFile(file, "") }
            try await waitUntil("\(gadgets) removals") { recorder.removals.load(ordering: .relaxed) >= gadgets }
        }
    }
}

/// What the burst and storm rows share: a raw libusb hotplug callback, a
/// manager with an in-memory registry, the gadgets' UDC files (each gadget
/// unplugged at the start) and a recorder of devif's arrivals.
struct ArrivalRig {
    let callbacks: LibUSBCallbacks
    let manager: DeviceManager
    let udcFiles: [String]
    let recorder: ArrivalRecorder
    /// Told of every callback and every arrival or removal devif published.
    let changes = Changes()

    init(_ device: DeviceOptions, gadgetPrefix: String, gadgets: Int) async throws {
        callbacks = try LibUSBCallbacks(vendorID: device.vid, productID: device.pid, changes: changes)
        var options = DeviceManager.Options()
        options.inMemoryRegistry = true
        manager = try await startedManager(options)
        udcFiles = (0..<gadgets).map { gadgetPrefix + String(format: "%02d", $0) + "/UDC" }
        recorder = ArrivalRecorder(manager, device, changes: changes)
        do {
            for file in udcFiles { try writeUDCFile(file, "") }
        } catch {
            stop()
            throw error
        }
    }

    /// Forgets the callbacks and arrivals seen so far (a new burst or storm).
    func reset() {
        callbacks.reset()
        recorder.reset()
    }

    func stop() {
        recorder.stop()
        manager.stop()
        changes.finish()
    }
}

/// What the rows wait on between bursts: no poll and no wake-up while devif
/// works. The thread that makes the awaited condition true (libusb's
/// callback or devif's arrival, whichever comes second) checks it and wakes
/// the waiter. With a 5 ms poll instead, the process's dispatch threads
/// (the poll's timers among them) took most of its CPU samples in the lab,
/// on the two vCPUs devif's threads need.
final class Changes: Sendable {
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation
    private let awaited = Mutex<(@Sendable () -> Bool)?>(nil)

    init() { (stream, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1)) }

    /// Something changed (any thread): wakes the waiter if its condition holds now.
    func changed() {
        if awaited.withLock({ $0?() ?? false }) { continuation.yield() }
    }

    func finish() { continuation.finish() }

    /// Waits until `done()` holds; false after `limit`. One waiter at a time.
    func wait(for limit: Duration, until done: @escaping @Sendable () -> Bool) async throws -> Bool {
        awaited.withLock { $0 = done }
        defer { awaited.withLock { $0 = nil } }
        let timer = Task { [continuation] in
            try await Task.sleep(for: limit)
            continuation.yield()
        }
        defer { timer.cancel() }
        let deadline = ContinuousClock.now + limit
        var changes = stream.makeAsyncIterator()
        while !done() {
            guard ContinuousClock.now < deadline, await changes.next() != nil else { return done() }
        }
        return true
    }
}

/// devif's usb-device arrivals of one VID/PID by "bus/address" (publish
/// time; unique within a run, as addresses grow on each bus) and how many
/// removals, from a watch.
final class ArrivalRecorder: Sendable {
    private let published = Mutex<[String: Date]>([:])
    let removals = Atomic<Int>(0)
    private let subscriber = Mutex<Task<Void, Never>?>(nil)

    init(_ manager: DeviceManager, _ device: DeviceOptions, changes: Changes) {
        let watch = manager.watch(InterfaceFilter(vendorId: device.vid, productId: device.pid, kind: .usb))
        // Holds this recorder until stop() cancels it.
        let task = Task { [self] in
            for await update in watch.updates {
                guard case .event(let e) = update, e.interface.interfaceNumber == nil, let node = e.interface.devnode else { continue }
                let parts = node.split(separator: "/").suffix(2).compactMap { Int($0) }
                guard parts.count == 2 else { continue }
                if e.event == .arrival { published.withLock { $0["\(parts[0])/\(parts[1])"] = e.time } } else { removals.add(1, ordering: .relaxed) }
                changes.changed()
            }
        }
        subscriber.withLock { $0 = task }
    }

    var arrivals: [String: Date] { published.withLock { $0 } }
    func reset() {
        published.withLock { $0 = [:] }
        removals.store(0, ordering: .relaxed)
    }
    func stop() { subscriber.withLock { $0?.cancel() } }

    /// Milliseconds from each of libusb's callbacks to devif's arrival of
    /// that device, sorted; devices devif did not report are left out.
    func lags(after callbacks: [String: Date]) -> [Double] {
        let mine = arrivals
        return callbacks.compactMap { key, t in mine[key].map { $0.timeIntervalSince(t) * 1000 } }.sorted()
    }
}

/// A raw libusb context with a hotplug callback that stamps each arrival
/// ("bus/address" -> wall time), and its own event thread.
final class LibUSBCallbacks: @unchecked Sendable {  // ctx is thread-safe; `stamps` is locked
    private let ctx: OpaquePointer
    private var handle: libusb_hotplug_callback_handle = 0
    private let stamps = Mutex<[String: Date]>([:])
    private let running = Atomic<Bool>(true)
    private var thread: Thread?

    private let changes: Changes

    init(vendorID: UInt16, productID: UInt16, changes: Changes) throws {
        self.changes = changes
        var c: OpaquePointer?
        guard libusb_init(&c) == 0, let c else { throw BenchFailure("libusb_init failed") }
        ctx = c
        let rc = libusb_hotplug_register_callback(
            ctx, Int32(LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED.rawValue), 0, Int32(vendorID), Int32(productID),
            LIBUSB_HOTPLUG_MATCH_ANY, { _, dev, _, user in
                let now = Date()
                let me = Unmanaged<LibUSBCallbacks>.fromOpaque(user!).takeUnretainedValue()
                me.stamps.withLock { $0["\(libusb_get_bus_number(dev))/\(libusb_get_device_address(dev))"] = now }
                me.changes.changed()
                return 0
            }, Unmanaged.passUnretained(self).toOpaque(), &handle)
        guard rc == 0 else { libusb_exit(ctx); throw BenchFailure("libusb_hotplug_register_callback failed: \(rc)") }
        let t = Thread { [self] in
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            while running.load(ordering: .relaxed) { libusb_handle_events_timeout_completed(ctx, &tv, nil) }
        }
        t.start()
        thread = t
    }

    var arrivals: [String: Date] { stamps.withLock { $0 } }
    var count: Int { stamps.withLock { $0.count } }
    func reset() { stamps.withLock { $0 = [:] } }

    deinit {
        libusb_hotplug_deregister_callback(ctx, handle)
        running.store(false, ordering: .relaxed)
        libusb_interrupt_event_handler(ctx)
        while thread?.isFinished == false { usleep(1000) }
        libusb_exit(ctx)
    }
}

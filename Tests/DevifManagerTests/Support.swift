import Devif
import DevifCore
import Foundation
import Synchronization

// MARK: - A source the test drives

/// A ``DeviceSource`` whose events come from the test: it stands in for the
/// libusb and hidraw sources so the manager's pipeline can be tested without
/// devices. With `failure` set it cannot run (its `start` throws).
final class FakeSource: DeviceSource {
    let name: String
    let failure: SourceError?
    /// The manager's sink while started. Calls are made under this lock, so no
    /// sink call begins after `stop()` returns (the protocol's promise).
    private let sink = CallbackSlot<SourceEvent>()
    let startCount = Atomic<Int>(0)
    let stopCount = Atomic<Int>(0)

    init(_ name: String, failing message: String? = nil) {
        self.name = name
        failure = message.map { SourceError(source: name, message: $0) }
    }

    func start(_ sink: @escaping @Sendable (SourceEvent) -> Void) throws(SourceError) {
        startCount.add(1, ordering: .relaxed)
        if let failure { throw failure }
        self.sink.set(sink)
    }

    func stop() {
        stopCount.add(1, ordering: .relaxed)
        sink.set(nil)
    }

    /// Hands `event` to the manager, as the source's thread would. False if
    /// the source is not running.
    @discardableResult
    func push(_ event: SourceEvent) -> Bool {
        sink.callHoldingLock(event)
    }

    func arrive(_ snapshot: DeviceSnapshot) { push(.arrived(snapshot)) }
    func remove(_ snapshot: DeviceSnapshot) { push(.removed(key: snapshot.sourceKey)) }
    func enumerated() { push(.enumerated) }

    /// Pushes `events` from a thread of its own (like a real source's thread);
    /// `between` runs before each event (to vary the interleaving).
    func pushOnThread(_ events: [SourceEvent], between: @escaping @Sendable (Int) -> Void = { _ in }) -> Thread {
        let thread = Thread { [self] in
            for (n, e) in events.enumerated() {
                between(n)
                push(e)
            }
        }
        thread.start()
        return thread
    }
}

// MARK: - Awaiting things with a deadline

/// Collects values delivered from other threads and lets a test await a
/// condition on them with a deadline (never an unbounded wait, never a sleep
/// standing in for an event).
final class Recorder<T: Sendable>: Sendable {
    private struct Waiter {
        var id: UInt64
        var ready: @Sendable ([T], Bool) -> Bool
        var continuation: CheckedContinuation<Void, Never>
    }
    private struct State {
        var items: [T] = []
        var ended = false
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    init() {}

    var items: [T] { state.withLock { $0.items } }
    var ended: Bool { state.withLock { $0.ended } }

    func append(_ item: T) { update { $0.items.append(item) } }
    func end() { update { $0.ended = true } }

    private func update(_ change: (inout State) -> Void) {
        let wake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            change(&s)
            let (items, ended) = (s.items, s.ended)
            let ready = s.waiters.filter { $0.ready(items, ended) }
            s.waiters.removeAll { $0.ready(items, ended) }
            return ready.map(\.continuation)
        }
        for c in wake { c.resume() }
    }

    /// Waits until `ready(items, ended)` holds or `timeout` passes; returns
    /// whether it held.
    @discardableResult
    func wait(timeout: Duration = .seconds(5),
              until ready: @escaping @Sendable ([T], Bool) -> Bool) async -> Bool {
        let id = state.withLock { s in defer { s.nextID += 1 }; return s.nextID }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let now = state.withLock { s -> Bool in
                            if ready(s.items, s.ended) || Task.isCancelled { return true }
                            s.waiters.append(Waiter(id: id, ready: ready, continuation: c))
                            return false
                        }
                        if now { c.resume() }
                    }
                } onCancel: { [self] in
                    let parked = state.withLock { s -> CheckedContinuation<Void, Never>? in
                        guard let k = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                        return s.waiters.remove(at: k).continuation
                    }
                    parked?.resume()
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return state.withLock { ready($0.items, $0.ended) }
    }

    /// Waits for at least `count` items; returns them (fewer on timeout).
    func wait(count: Int, timeout: Duration = .seconds(5)) async -> [T] {
        await wait(timeout: timeout) { items, _ in items.count >= count }
        return items
    }

    /// Waits for the end; returns whether it came in time.
    func waitEnd(timeout: Duration = .seconds(5)) async -> Bool {
        await wait(timeout: timeout) { _, ended in ended }
    }
}

/// Reads a watch's updates on a task of its own into a recorder.
func record(_ watch: InterfaceWatch) -> Recorder<WatchUpdate> {
    let recorder = Recorder<WatchUpdate>()
    Task {
        for await update in watch.updates { recorder.append(update) }
        recorder.end()
    }
    return recorder
}

extension WatchUpdate {
    var event: InterfaceEvent? {
        if case .event(let e) = self { return e }
        return nil
    }
    var missed: UInt64? {
        if case .overflow(let m) = self { return m }
        return nil
    }
}

extension Array where Element == WatchUpdate {
    var events: [InterfaceEvent] { compactMap(\.event) }
}

// MARK: - A manager with fake sources

/// A started manager over fake sources, with every notice recorded.
struct Harness {
    let manager: DeviceManager
    let sources: [FakeSource]
    let notices = Recorder<String>()
    private static let barrierCount = Atomic<Int>(0)

    init(_ sources: [FakeSource], catalog: ClassCatalog = .builtIn, watchCapacity: Int? = nil,
         start: Bool = true) throws {
        var options = DeviceManager.Options()
        options.sources = sources
        options.inMemoryRegistry = true
        options.catalog = catalog
        if let watchCapacity { options.watchCapacity = watchCapacity }
        manager = try DeviceManager(options: options)
        self.sources = sources
        let notices = notices
        manager.onNotice { notices.append($0.description) }
        if start { manager.start() }
    }

    /// Waits until the pipeline has applied everything `source` pushed before
    /// this call: a notice goes through the same ordered queue as the events,
    /// so seeing it come out means everything before it was applied (and
    /// recorded in the registry). Returns false on timeout.
    @discardableResult
    func barrier(_ source: FakeSource, timeout: Duration = .seconds(5)) async -> Bool {
        let n = Self.barrierCount.add(1, ordering: .relaxed).newValue
        let text = "barrier \(n)"
        guard source.push(.notice(Notice(.degraded, text))) else { return false }
        let expected = "\(source.name): \(text)"
        return await notices.wait(timeout: timeout) { items, _ in items.contains(expected) }
    }
}

// MARK: - Snapshots

let usbDeviceGUID = WellKnownClass.usbDevice.guid
let usbDeviceGUIDText = "{a5dcbf10-6530-11d2-901f-00c04fb951ed}"

/// A USB device with one configuration holding one vendor-specific interface
/// (so one instance: the device, a member of `usb-device`).
func usbSnapshot(vid: UInt16 = 0x1209, pid: UInt16 = 0x0001, serial: String? = "SER",
                 bus: UInt8 = 1, ports: [UInt8] = [1], address: UInt8 = 4,
                 product: String = "Probe") -> DeviceSnapshot {
    let devnode = String(format: "/dev/bus/usb/%03d/%03d", Int(bus), Int(address))
    return DeviceSnapshot(
        kind: .usb, portChain: PortChain(bus: bus, ports: ports), deviceAddress: address,
        vendorID: vid, productID: pid, bcdDevice: 0x0100, deviceClass: ClassTriple(0, 0, 0),
        manufacturer: "Acme", product: product, serialNumber: serial,
        configurations: [USBConfiguration(value: 1, interfaces: [
            USBInterface(number: 0, interfaceClass: ClassTriple(0xff, 0, 0)),
        ])],
        activeConfigurationValue: 1, devnode: devnode,
        sysfsPath: "/sys/bus/usb/devices/\(PortChain(bus: bus, ports: ports))", access: .ok)
}

/// A keyboard's hidraw node on USB (instances in `hid` and `keyboard`).
func hidKeyboardSnapshot(vid: UInt16 = 0x046d, pid: UInt16 = 0xc31c, serial: String? = "KB1",
                         node: Int = 0, ports: [UInt8] = [3]) -> DeviceSnapshot {
    DeviceSnapshot(
        kind: .hid, portChain: PortChain(bus: 1, ports: ports), vendorID: vid, productID: pid,
        manufacturer: "Logi", product: "Keyboard", serialNumber: serial,
        hid: HIDProperties(usages: [.keyboard], reportDescriptor: [], interfaceNumber: 0, busType: .usb),
        devnode: "/dev/hidraw\(node)", sysfsPath: "/sys/class/hidraw/hidraw\(node)", access: .ok)
}

import DevifCore
import DevifLinux
import Dispatch
import FoundationEssentials
import Glibc
import Logging
import Synchronization

/// The middle of the pipeline: takes source events one at a time, in order,
/// classifies snapshots into instances, names them, keeps the present set,
/// numbers and publishes changes, and records them in the registry.
///
/// Ordering is the point: one turn at a time applies changes (the pipeline's
/// thread, or an idle pipeline's submitter: ``PipelineQueue``), and a watch takes its
/// snapshot and subscribes under the same lock that applying and publishing
/// hold, so a watcher's snapshot and its changes neither overlap nor leave a
/// gap (the race libusb's ENUMERATE flag leaves to its callers).
final class Pipeline: Sendable {
    private struct Entry {
        var interface: DeviceInterface
        var seq: UInt64
        var time: Date
        /// The device the instance belongs to (what its removal names).
        var device: DeviceKey
    }

    private struct State {
        /// Present instances by link: the one map a link is looked up in.
        var present: [String: Entry] = [:]
        /// Present devices -> the links their snapshots produced.
        var linksByKey: [DeviceKey: [String]] = [:]
        var seq: UInt64 = 0
        var pendingSources: Set<String>
        var waiters: [(UInt64, CheckedContinuation<Void, Never>)] = []
        var enumerationDone = false
        var notices: [Notice] = []
        var noticeHandlers: [@Sendable (Notice) -> Void] = []
    }

    private let classifier: Classifier
    /// Arrivals are rare and their subscribers wait for them: the pipeline
    /// thread resumes a waiting subscriber itself (one thread hop less than
    /// through the fan-out's resumer thread).
    private let fanOut = FanOut<InterfaceEvent>(resumesOnPublisherThread: true)
    private let state: Mutex<State>
    private let queue = PipelineQueue<Work>()
    private enum Work: Sendable {
        /// A source's event.
        case event(source: String, SourceEvent)
        /// A notice found while applying an event on a source's thread, given
        /// on the pipeline's thread.
        case say(Notice)
    }
    private let watchCapacity: Int
    /// Diagnostics for the application's log: notices at `.notice`, every
    /// published change at `.debug` (the typed events stay the API to act on).
    private let logger: Logger
    private let thread = Mutex<JoinableThread?>(nil)
    private let deviceLeft = CallbackSlot<DeviceKey>()
    /// Commits registry changes behind the publications, on its own thread.
    private let writer: RegistryWriter
    /// Changes applied and published, not yet handed to the writer: a burst
    /// is handed over (and committed) as one when the queue runs empty.
    private let unhanded = Mutex<[RegistryIntent]>([])
    /// A burst is handed over at the latest after this many changes.
    private static let maximumUnhanded = 256

    init(classifier: Classifier, registry: RegistryOpening, sourceNames: [String], watchCapacity: Int,
         logger: Logger = .discarding) {
        self.logger = logger
        self.classifier = classifier
        writer = RegistryWriter(registry: registry)
        self.watchCapacity = watchCapacity
        state = Mutex(State(pendingSources: Set(sourceNames)))
    }

    /// Starts the pipeline thread; false (with a notice) if the process has
    /// no thread to spare.
    @discardableResult
    func start() -> Bool {
        do {
            let t = try JoinableThread(name: "devif-pipeline") { [self] in
                while let work = queue.next() {
                    switch work {
                    case .event(let source, let event): apply(source, event, say: notice)
                    case .say(let n): notice(n)
                    }
                    // Group commit: a burst of events (a hub, a storm) is one
                    // registry transaction. A commit (two fsyncs) was most of
                    // this thread's time per event (lab: 14.8 of 24.3 ms
                    // median) and delayed the next arrival behind it: the
                    // writer commits on its own thread.
                    if queue.isEmpty || unhanded.withLock({ $0.count }) >= Self.maximumUnhanded { handOver() }
                    sayRegistryFailure(say: notice)
                    queue.finishTaken()
                }
                flushRegistry()
            }
            thread.withLock { $0 = t }
            queue.markStarted()
            // With no sources there is nothing to wait for.
            if state.withLock({ $0.pendingSources.isEmpty }) { finishEnumeration() }
            return true
        } catch {
            notice(Notice(.sourceUnavailable, "cannot start the pipeline thread: \(error); no device is reported"))
            return false
        }
    }

    /// Called on a source's thread. An arrival or a removal is applied right
    /// here when the pipeline is idle (nothing queued, nothing applying);
    /// everything else, and everything while it is busy, goes to the
    /// pipeline's thread in order. Notices found on the way (and every
    /// notice handler) still run on the pipeline's thread: a handler never
    /// runs on a source's thread.
    func submit(source: String, _ event: SourceEvent) {
        let inlineAllowed = switch event {
        case .arrived, .removed: true
        case .enumerated, .notice: false
        }
        guard case .inline = queue.submit(.event(source: source, event), inlineAllowed: inlineAllowed) else { return }
        let later = { (n: Notice) in _ = self.queue.submit(.say(n), inlineAllowed: false) }
        apply(source, event, say: later)
        handOver()
        sayRegistryFailure(say: later)
        queue.finishInline()
    }

    /// A pipeline never started still has its writer's thread to end.
    deinit { writer.stop() }

    func stop() {
        queue.close()
        // Wait for the pipeline thread to end (queued events are dropped), so no
        // publish runs after finish().
        thread.withLock { $0 }?.join()
        writer.stop()
        fanOut.finish()
        finishEnumeration()
    }

    func sourceFailed(_ name: String, _ error: SourceError) {
        notice(Notice(source: name, .sourceUnavailable, error.message))
        submit(source: name, .enumerated)
    }

    // MARK: Applying source events (one turn at a time: PipelineQueue)

    /// Applies one event; `say` gives the notices it finds.
    private func apply(_ source: String, _ event: SourceEvent, say: (Notice) -> Void) {
        switch event {
        case .arrived(let snapshot):
            arrive(source, snapshot, say: say)
        case .removed(let key):
            remove(key: DeviceKey(source: source, key: key))
        case .enumerated:
            let done = state.withLock { s -> Bool in
                s.pendingSources.remove(source)
                return s.pendingSources.isEmpty
            }
            logger.debug("source enumerated", metadata: ["source": "\(source)"])
            // What a waiter or a notice handler reads next (the registry
            // included) reflects everything before: commit before telling.
            if done { reconcileRegistry(); flushRegistry(); finishEnumeration() }
        case .notice(var n):
            flushRegistry()
            n.source = n.source ?? source
            say(n)
        }
    }

    private func arrive(_ source: String, _ snapshot: DeviceSnapshot, say: (Notice) -> Void) {
        let key = DeviceKey(source: source, key: snapshot.sourceKey)
        // A second arrival for a key still present replaces the first.
        if state.withLock({ $0.linksByKey[key] != nil }) { remove(key: key) }
        let instances = classifier.classify(snapshot)
        let now = Date()
        var records: [RegistryRecord] = []
        var told: [String] = []
        state.withLock { s in
            var links: [String] = []
            for instance in instances where !instance.memberships.isEmpty {
                let (names, why) = Self.links(for: instance) { s.present[$0.rawValue] != nil }
                if let why { told.append(why) }
                for (m, link) in zip(instance.memberships, names) {
                    let i = DeviceInterface(instance: instance, membership: m, link: link, snapshot: snapshot)
                    s.seq += 1
                    s.present[link.rawValue] = Entry(interface: i, seq: s.seq, time: now, device: key)
                    links.append(link.rawValue)
                    fanOut.publish(InterfaceEvent(seq: s.seq, event: .arrival, time: now, interface: i))
                    records.append(i.registryRecord)
                    logger.debug("arrival", metadata: Self.metadata(i, seq: s.seq, device: key.description))
                }
            }
            s.linksByKey[key] = links
        }
        for text in told { say(Notice(source: source, .naming, text)) }
        commit(records.map { .arrival($0) })
    }

    /// The links of `instance`'s memberships, none of them `taken`: the
    /// usual ones; when one is taken (two present devices with one serial),
    /// all with the location, so no link ever names two devices; when those
    /// are taken too (the same serial and location: identical uhid devices, a
    /// replug whose old device's removal is still queued), all with the
    /// smallest ordinal `!N` that frees them, and a sentence saying why.
    /// Every instance gets its links: none is ever hidden.
    static func links(for instance: Instance, taken: (SymbolicLink) -> Bool) -> ([SymbolicLink], String?) {
        let usual = instance.memberships.map(\.symbolicLink)
        if !usual.contains(where: taken) { return (usual, nil) }
        let guids = instance.memberships.map(\.interfaceClass.guid)
        let located = guids.map { instance.identity.symbolicLink(for: $0, includeLocation: true) }
        if !located.contains(where: taken) { return (located, nil) }
        var n = 2
        while n < SymbolicLink.maximumOrdinal,
              guids.contains(where: { taken(instance.identity.symbolicLink(for: $0, ordinal: n)) }) { n += 1 }
        let numbered = guids.map { instance.identity.symbolicLink(for: $0, ordinal: n) }
        // Links only in the sentence: they are safe to print, device strings are not.
        let why = "another present instance has the same serial and location as \(numbered[0]) "
            + "(\(located[0])); this one is told apart by the ordinal !\(n), "
            + "which depends on arrival order and may differ at the next plug"
        return (numbered, why)
    }

    private func remove(key: DeviceKey) {
        let now = Date()
        let links = state.withLock { s -> [String] in
            guard let links = s.linksByKey.removeValue(forKey: key) else { return [] }
            for link in links {
                guard var entry = s.present.removeValue(forKey: link) else { continue }
                entry.interface.present = false
                s.seq += 1
                fanOut.publish(InterfaceEvent(seq: s.seq, event: .removal, time: now, interface: entry.interface))
                logger.debug("removal", metadata: Self.metadata(entry.interface, seq: s.seq, device: key.description))
            }
            return links
        }
        // Open handles' I/O ends before the registry write.
        if !links.isEmpty { deviceLeft.call(key) }
        commit(links.map { .removal(link: $0) })
    }

    /// Calls `handler` (where the removal is applied: the pipeline thread, or
    /// the source thread that submitted it) with the key of every device
    /// that leaves, as ``deviceKey(link:)`` gives it.
    func onDeviceLeft(_ handler: @escaping @Sendable (DeviceKey) -> Void) {
        deviceLeft.set(handler)
    }

    /// The present device an instance belongs to; nil if not present.
    func deviceKey(link: String) -> DeviceKey? {
        state.withLock { $0.present[link]?.device }
    }

    /// Instances the registry thinks present from an earlier run, but which
    /// no source reported, are marked absent (not published: no watcher of
    /// this process was told they arrived).
    private func reconcileRegistry() {
        let present = state.withLock { Set($0.present.keys) }
        commit([.reconcile(present: present)])
    }

    /// Queues `intents` for the registry (in order).
    private func commit(_ intents: [RegistryIntent]) {
        guard !intents.isEmpty else { return }
        unhanded.withLock { $0 += intents }
    }

    /// Hands the queued changes to the writer as one commit, without waiting.
    private func handOver() {
        writer.commit(unhanded.withLock { pending in defer { pending = [] }; return pending })
    }

    /// Returns once every queued change is committed: before a notice or the
    /// end of enumeration, so what their readers see next includes it.
    private func flushRegistry() {
        handOver()
        writer.flush()
        sayRegistryFailure(say: notice)
    }

    private func sayRegistryFailure(say: (Notice) -> Void) {
        guard let error = writer.takeFailure() else { return }
        say(Notice(.registry, "cannot record changes in the instance registry (\(error)); arrivals and removals are still delivered"))
    }

    // MARK: Enumeration and notices

    private func finishEnumeration() {
        let waiters = state.withLock { s in
            s.enumerationDone = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for (_, w) in waiters { w.resume() }
    }

    func waitUntilEnumerated(timeout: Duration) async -> Bool {
        // A parked waiter is resumed by the end of enumeration, by its timer
        // or by cancellation, whichever comes first (the others find it gone).
        // The timer is a dispatch source cancelled on return, not a sleeping
        // task: a cancelled Task.sleep keeps its task until the deadline.
        let id = UInt64.random(in: 1...UInt64.max)
        let timer = Mutex<(any DispatchSourceTimer)?>(nil)
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { s -> Bool in
                    if s.enumerationDone || Task.isCancelled || timeout <= .zero { return true }
                    s.waiters.append((id, c))
                    return false
                }
                if ready { c.resume(); return }
                // Capped at about 30 years: DispatchTime counts nanoseconds in 64 bits.
                let interval = min(timeout.seconds, 1e9)
                timer.withLock { t in
                    let source = DispatchSource.makeTimerSource(queue: .global())
                    source.setEventHandler { [self] in resumeWaiter(id) }
                    source.schedule(deadline: .now() + interval)
                    source.activate()
                    t = source
                }
                // Resumed meanwhile: the code after the wait may have found no timer to cancel.
                if !state.withLock({ $0.waiters.contains { $0.0 == id } }) { timer.withLock { $0?.cancel() } }
            }
        } onCancel: {
            resumeWaiter(id)
        }
        timer.withLock { $0?.cancel() }
        return state.withLock { $0.enumerationDone }
    }

    /// Resumes the waiter `id` if it is still parked.
    private func resumeWaiter(_ id: UInt64) {
        let parked = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let k = s.waiters.firstIndex(where: { $0.0 == id }) else { return nil }
            return s.waiters.remove(at: k).1
        }
        parked?.resume()
    }

    func notice(_ n: Notice) {
        logger.notice("\(n.message)", metadata: ["source": "\(n.source ?? "manager")", "kind": "\(n.kind.rawValue)"])
        let handlers = state.withLock { s -> [@Sendable (Notice) -> Void] in
            s.notices.append(n)
            return s.noticeHandlers
        }
        for h in handlers { h(n) }
    }

    func onNotice(_ handler: @escaping @Sendable (Notice) -> Void) {
        let past = state.withLock { s in
            s.noticeHandlers.append(handler)
            return s.notices
        }
        for n in past { handler(n) }
    }

    private static func metadata(_ i: DeviceInterface, seq: UInt64, device: String) -> Logger.Metadata {
        ["link": "\(i.symbolicLink)", "seq": "\(seq)", "device": "\(device)", "devnode": "\(i.devnode ?? "-")"]
    }

    // MARK: Queries and watches

    func present(_ filter: InterfaceFilter) -> [DeviceInterface] {
        state.withLock { s in s.present.values.map(\.interface).filter(filter.matches) }
            .sorted { $0.symbolicLink < $1.symbolicLink }
    }

    func present(link: String) -> DeviceInterface? {
        state.withLock { $0.present[link]?.interface }
    }

    func watch(_ filter: InterfaceFilter, capacity: Int?) -> InterfaceWatch {
        state.withLock { s in
            let snapshot = s.present.values.filter { filter.matches($0.interface) }.sorted { $0.seq < $1.seq }
                .map { InterfaceEvent(seq: $0.seq, event: .arrival, time: $0.time, interface: $0.interface) }
            let subscription = fanOut.subscribe(capacity: capacity ?? watchCapacity)
            return InterfaceWatch(snapshotEvents: snapshot, subscription: subscription, filter: filter)
        }
    }

    func onChange(_ filter: InterfaceFilter, enumerate: Bool,
                  _ handler: @escaping @Sendable (WatchUpdate) -> Void) -> WatchToken {
        state.withLock { s in
            let snapshot = enumerate
                ? s.present.values.filter { filter.matches($0.interface) }.sorted { $0.seq < $1.seq }
                    .map { InterfaceEvent(seq: $0.seq, event: .arrival, time: $0.time, interface: $0.interface) }
                : []
            // The snapshot is handed over on the callback thread before any
            // change: subscribing under the lock orders it ahead of them.
            let subscription = fanOut.subscribe(capacity: watchCapacity, name: "watch", onStart: {
                for e in snapshot { handler(.event(e)) }
            }) { delivery in
                switch delivery {
                case .event(let e): if filter.matches(e.interface) { handler(.event(e)) }
                case .overflow(let missed): handler(.overflow(missed: missed))
                }
            }
            return WatchToken(subscription: subscription)
        }
    }
}

/// One present device as the pipeline knows it: its source and the key the
/// source reports it by (``DeviceSnapshot/sourceKey``, the device node), so
/// the same node from two sources is two devices.
struct DeviceKey: Hashable, Sendable, CustomStringConvertible {
    var source: String
    var key: String
    /// `usb:/dev/bus/usb/001/004`: for logs.
    var description: String { source + ":" + key }
}

extension DeviceInterface {
    init(instance: Instance, membership m: ClassMembership, link: SymbolicLink, snapshot: DeviceSnapshot) {
        let id = instance.identity
        let access: Access? = switch instance.access {
        case .ok: .ok
        case .denied: .denied
        case .unknown: nil
        }
        self.init(symbolicLink: link, classGuid: m.interfaceClass.guid, className: m.interfaceClass.name,
                  kind: id.kind, vendorId: id.vendorID, productId: id.productID, serialNumber: id.serialNumber,
                  interfaceNumber: id.interfaceNumber.map(Int.init),
                  // The snapshot's own chain first: the identity's is its
                  // location parsed again (the same chain, or a USB/IP
                  // location that is none).
                  portChain: snapshot.portChain ?? id.portChain,
                  devnode: instance.devnode, manufacturer: instance.manufacturer, product: instance.product,
                  present: true, access: access, snapshot: snapshot)
    }

    var registryRecord: RegistryRecord {
        RegistryRecord(symbolicLink: symbolicLink.rawValue, classGuid: classGuid.description, className: className,
                       kind: kind == .usb ? .usb : .hid, vendorId: vendorId, productId: productId,
                       serialNumber: serialNumber, interfaceNumber: interfaceNumber, portChain: portChain?.description,
                       manufacturer: manufacturer, product: product, devnode: devnode)
    }
}

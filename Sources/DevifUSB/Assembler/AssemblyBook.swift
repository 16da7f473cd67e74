import DevifCore

/// The USB source's record of every announced device from its announcement
/// to its departure, and the rules for what the source reports. Pure (no
/// threads, no I/O), so the order rules are unit-tested.
///
/// Each device is made ready on a worker of its own, so a device waiting for
/// its driver or a slow string holds up no other. The book keeps the order
/// that matters per device: its arrival before its removal, and a device that
/// leaves before it is ready is still reported, with what was known when it
/// was announced and ``DeviceSnapshot/leftBeforeReady`` set, then its
/// removal. Every announcement thus ends in one arrival and one removal.
///
/// `Key` names one device for as long as it is present: the libusb device
/// (libusb mode) or its node (kernel mode).
struct AssemblyBook<Key: Hashable> {
    /// What the source does next, in order.
    enum Step {
        case emit(SourceEvent)
        /// Start making this device ready (on a worker); its result comes
        /// back through ``assembled(_:_:)``.
        case assemble(Key)
        /// The device left while being made ready: its worker may stop early;
        /// its result will be ignored.
        case abandon(Key)
    }

    private enum Entry {
        case assembling(known: @Sendable () -> DeviceSnapshot)
        /// Reported; the removal names it by this key.
        case reported(sourceKey: String)
    }

    private var entries: [Key: Entry] = [:]
    /// Announced before the source's enumeration ended and not reported yet:
    /// `.enumerated` waits for these, so the first list is whole.
    private var enumerating: Set<Key> = []
    private var enumerationMarked = false
    private var enumerationReported = false

    init() {}

    /// How many devices are being made ready now.
    var assemblingCount: Int { entries.values.count { if case .assembling = $0 { true } else { false } } }

    /// Whether `key` was announced and has not left.
    func contains(_ key: Key) -> Bool { entries[key] != nil }

    /// The keys of the devices reported and not yet removed.
    var reportedKeys: [Key] { entries.compactMap { if case .reported = $0.value { $0.key } else { nil } } }

    /// A device was announced. `known` is what the announcement itself told
    /// (ids, descriptors, place): reported as is if the device leaves before
    /// it is ready. A second announcement of a present device is ignored.
    /// `known` is made only if that happens: building a snapshot on every
    /// announcement cost about 0.2 ms of each plug's arrival in the lab VM.
    mutating func announced(_ key: Key, known: @autoclosure @escaping @Sendable () -> DeviceSnapshot) -> [Step] {
        guard entries[key] == nil else { return [] }
        entries[key] = .assembling(known: known)
        if !enumerationMarked { enumerating.insert(key) }
        return [.assemble(key)]
    }

    /// A device announced after it had gone (kernel mode: its uevent came,
    /// its sysfs directory had already left): reported at once as known,
    /// marked; its departure brings the removal.
    mutating func announcedGone(_ key: Key, known: DeviceSnapshot) -> [Step] {
        guard entries[key] == nil else { return [] }
        var snapshot = known
        snapshot.leftBeforeReady = true
        entries[key] = .reported(sourceKey: snapshot.sourceKey)
        return [.emit(.arrived(snapshot))]
    }

    /// The device is ready (or its worker found it gone). Ignored when the
    /// device has left meanwhile: it was reported then.
    mutating func assembled(_ key: Key, _ result: USBAssembler.Result) -> [Step] {
        guard case .assembling = entries[key] else { return [] }
        var snapshot = result.snapshot
        // Gone before its departure was announced: report what was read,
        // marked; the departure brings the removal.
        if result.gone { snapshot.leftBeforeReady = true }
        entries[key] = .reported(sourceKey: snapshot.sourceKey)
        var steps: [Step] = []
        if !result.problems.isEmpty && !result.gone {
            steps.append(.emit(.notice(Notice(.device, "\(snapshot.portChain.map(String.init(describing:)) ?? "?") "
                + "\(hex4(snapshot.vendorID)):\(hex4(snapshot.productID)): " + result.problems.joined(separator: "; ")))))
        }
        steps.append(.emit(.arrived(snapshot)))
        return steps + finished(key)
    }

    /// The device left. Reported: its removal. Still being made ready: its
    /// arrival as known at the announcement, marked as left before it was
    /// ready, then its removal. Unknown (never announced, or dropped): nothing.
    mutating func left(_ key: Key) -> [Step] {
        switch entries.removeValue(forKey: key) {
        case .reported(let sourceKey):
            return [.emit(.removed(key: sourceKey))]
        case .assembling(let make):
            var known = make()
            known.leftBeforeReady = true
            return [.abandon(key), .emit(.arrived(known)), .emit(.removed(key: known.sourceKey))] + finished(key)
        case nil:
            return []
        }
    }

    /// Forgets a device without reporting anything: for one that was never
    /// announced by an event (kernel mode's sysfs walk found it, then it went
    /// before it could be read), whose departure may never come.
    mutating func forget(_ key: Key) -> [Step] {
        guard let entry = entries.removeValue(forKey: key) else { return [] }
        if case .assembling = entry { return [.abandon(key)] + finished(key) }
        return []
    }

    /// The source has announced every device present at its start: report
    /// `.enumerated` once those are reported.
    mutating func enumerationEnded() -> [Step] {
        enumerationMarked = true
        return reportEnumeratedIfDone()
    }

    private mutating func finished(_ key: Key) -> [Step] {
        enumerating.remove(key)
        return reportEnumeratedIfDone()
    }

    private mutating func reportEnumeratedIfDone() -> [Step] {
        guard enumerationMarked, !enumerationReported, enumerating.isEmpty else { return [] }
        enumerationReported = true
        return [.emit(.enumerated)]
    }
}

import FoundationEssentials
import Glibc

/// One thing the registry is asked to record. A batch of intents is committed
/// atomically; the store turns them into numbered changes inside its write
/// transaction, against its own current state (not a cached copy), so two
/// processes sharing a store never number the same change twice.
public enum RegistryIntent: Sendable, Equatable {
    /// The instance is present with this description.
    case arrival(RegistryRecord)
    /// The instance with this link went away.
    case removal(link: String)
    /// Every instance the store holds as present whose link is not in the set
    /// is really absent (start-up reconciliation).
    case reconcile(present: Set<String>)
}

/// Everything a store holds about instances, as loaded at one moment.
public struct RegistryContents: Sendable, Equatable {
    /// Every instance ever seen, keyed by symbolic link.
    public var records: [String: RegistryRecord]
    /// The highest sequence number committed so far (0 for a new registry).
    public var lastSequence: RegistrySequence

    /// Contents from their parts (a store makes these when it loads).
    public init(records: [String: RegistryRecord], lastSequence: RegistrySequence) {
        self.records = records
        self.lastSequence = lastSequence
    }
}

/// Where the registry keeps its records, change log and remembered facts.
///
/// A store is safe to call from any thread. `commit` is atomic: either every
/// change of the batch is stored, numbered consecutively after the store's
/// latest sequence number, or none is. Stores decide what a batch changes with
/// `RegistryChangePlanner`, so every store numbers changes the same way.
public protocol RegistryStore: Sendable {
    /// Every record and the latest sequence number, as one consistent snapshot.
    func load() throws(RegistryError) -> RegistryContents

    /// Turns `intents` into changes (see `RegistryChangePlanner`), stores them
    /// all in one transaction, and returns them in sequence order. Intents that
    /// change nothing produce no change and no sequence number.
    func commit(_ intents: [RegistryIntent], time: Date) throws(RegistryError) -> [RegistryChange]

    /// Changes with a sequence number greater than `since`, oldest first, at
    /// most `limit` of them (all when nil).
    func changes(since: RegistrySequence, limit: Int?) throws(RegistryError) -> [RegistryChange]

    /// A remembered fact (e.g. a firmware probe result keyed by VID/PID/bcdDevice).
    func fact(forKey key: String) throws(RegistryError) -> String?

    /// Remembers `value` under `key`, or forgets the key when `value` is nil.
    func setFact(_ value: String?, forKey key: String, time: Date) throws(RegistryError)

    /// Every fact whose key starts with `prefix` (byte-wise), keyed by full key.
    func facts(withPrefix prefix: String) throws(RegistryError) -> [String: String]
}

/// The one place that decides what a batch of intents changes and how the
/// resulting changes are numbered. Stores call it inside their write
/// transaction with read access to their current state.
public enum RegistryChangePlanner {
    /// Longest symbolic link accepted, in UTF-8 bytes. Links are single file
    /// names (255 bytes on most Linux file systems); this bound only stops
    /// absurd input from bloating the store.
    public static let maximumLinkLength = 4096

    /// Plans the changes for `intents`.
    ///
    /// - An arrival of an instance that is present with the same description
    ///   changes nothing; otherwise it is an arrival that keeps `firstSeen`
    ///   (or sets it, the first time) and sets `lastSeen` to `time`.
    /// - A removal of an instance that is not present changes nothing.
    /// - Reconciliation removes, in link order, every present instance that is
    ///   not in the given set.
    ///
    /// Changes are numbered `lastSequence + 1`, `+ 2`, ... in intent order.
    /// Later intents see the effect of earlier ones in the same batch.
    ///
    /// - Parameters:
    ///   - intents: the arrivals, removals and reconciliations to apply, in order.
    ///   - lastSequence: the number of the store's last change.
    ///   - time: when the changes happen (rounded to the millisecond).
    ///   - lookup: the store's current record for a link.
    ///   - presentLinks: the links of every record the store holds as present.
    public static func plan(
        _ intents: [RegistryIntent], after lastSequence: RegistrySequence, time: Date,
        lookup: (String) throws(RegistryError) -> RegistryRecord?,
        presentLinks: () throws(RegistryError) -> [String]
    ) throws(RegistryError) -> [RegistryChange] {
        let time = RegistryTime.normalized(time)
        var pending: [String: RegistryRecord] = [:]
        var changes: [RegistryChange] = []
        var seq = lastSequence

        func current(_ link: String) throws(RegistryError) -> RegistryRecord? {
            if let record = pending[link] { return record }
            return try lookup(link)
        }
        func remove(_ link: String) throws(RegistryError) {
            guard var record = try current(link), record.present else { return }
            seq += 1
            record.present = false
            record.lastSeen = time
            record.lastChange = seq
            pending[link] = record
            changes.append(RegistryChange(seq: seq, event: .removal, link: link, time: time, record: record))
        }

        for intent in intents {
            switch intent {
            case .arrival(let given):
                var record = try validated(given)
                let old = try current(record.symbolicLink)
                if let old, old.present, old.hasSameDescription(as: record) { continue }
                seq += 1
                record.present = true
                record.firstSeen = old?.firstSeen ?? time
                record.lastSeen = time
                record.lastChange = seq
                pending[record.symbolicLink] = record
                changes.append(RegistryChange(seq: seq, event: .arrival, link: record.symbolicLink,
                                              time: time, record: record))
            case .removal(let link):
                try remove(link)
            case .reconcile(let reallyPresent):
                var links = Set(try presentLinks())
                // Account for this batch's own earlier intents.
                for (link, record) in pending {
                    if record.present { links.insert(link) } else { links.remove(link) }
                }
                for link in links.subtracting(reallyPresent).sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                    try remove(link)
                }
            }
        }
        return changes
    }

    /// `record` with its class GUID lowercased, or an error naming the bad field.
    public static func validated(_ record: RegistryRecord) throws(RegistryError) -> RegistryRecord {
        var record = record
        let link = record.symbolicLink
        if link.isEmpty {
            throw RegistryError(.invalidRecord, message: "a record has an empty symbolic link",
                                recovery: "Give every instance its symbolic link")
        }
        if link.utf8.count > maximumLinkLength {
            throw RegistryError(.invalidRecord,
                                message: "symbolic link is \(link.utf8.count) bytes long, more than \(maximumLinkLength)")
        }
        if link.utf8.contains(0) {
            throw RegistryError(.invalidRecord, message: "symbolic link \(link.debugDescription) contains a NUL byte")
        }
        record.classGuid = record.classGuid.lowercased()
        if !isBracedGuid(record.classGuid) {
            throw RegistryError(.invalidRecord,
                                message: "class GUID \(record.classGuid.debugDescription) of \(link.debugDescription) is not of the form {xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}")
        }
        return record
    }

    /// True for `{8-4-4-4-12}` lowercase hex.
    static func isBracedGuid(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 38, bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") else {
            return false
        }
        for (index, byte) in bytes.enumerated().dropFirst().dropLast() {
            if [9, 14, 19, 24].contains(index) {
                if byte != UInt8(ascii: "-") { return false }
            } else if !((0x30...0x39).contains(byte) || (0x61...0x66).contains(byte)) {
                return false
            }
        }
        return true
    }
}

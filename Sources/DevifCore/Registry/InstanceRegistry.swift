import FoundationEssentials
import Glibc
import Synchronization

/// The registry of every device interface instance ever seen, like Windows'
/// list of all registered device interfaces: present or absent, first and
/// last seen, and every arrival and removal numbered with a persistent,
/// strictly increasing sequence number.
///
/// Thread-safe; use it from any thread. Reads (`present()`, `all()`,
/// `record(for:)`) are served from memory. Writes go through the store, which
/// decides and numbers the changes inside its own transaction, so several
/// processes may share one store: a process sees another's changes after its
/// own next commit or after `refresh()`.
public final class InstanceRegistry: Sendable {
    private struct Cache {
        var records: [String: RegistryRecord]
        var lastSequence: RegistrySequence

        /// Applies changes in sequence order; a change older than the record
        /// already held (seen through another path) is skipped.
        mutating func apply(_ changes: [RegistryChange]) {
            for change in changes {
                lastSequence = max(lastSequence, change.seq)
                if let held = records[change.link], held.lastChange >= change.seq { continue }
                records[change.link] = change.record
            }
        }
    }

    /// Where the records live.
    public let store: any RegistryStore
    private let clock: @Sendable () -> Date
    // Held while the store commits, so the cache and the store never disagree
    // about this process's own changes.
    private let cache: Mutex<Cache>

    /// Opens the registry kept in `store`, loading every record.
    ///
    /// - Parameters:
    ///   - store: where the records are kept (SQLite, or in memory).
    ///   - clock: the time source for change times (tests pass a fixed clock).
    public init(store: any RegistryStore,
                clock: @escaping @Sendable () -> Date = { Date() }) throws(RegistryError) {
        let contents = try store.load()
        self.store = store
        self.clock = clock
        self.cache = Mutex(Cache(records: contents.records, lastSequence: contents.lastSequence))
        MSOS10ProbeMemory.registryOpened(self)
    }

    // MARK: Changes

    /// Records that an instance is present with this description. The
    /// registry fills `present`, `firstSeen`, `lastSeen` and `lastChange`.
    ///
    /// - Returns: the numbered change, or nil when the instance was already
    ///   present with the same description.
    @discardableResult
    public func recordArrival(_ record: RegistryRecord) throws(RegistryError) -> RegistryChange? {
        try commit([.arrival(record)]).first
    }

    /// Records that the instance with this link went away.
    ///
    /// - Returns: the numbered change, or nil when it was not present (or never seen).
    @discardableResult
    public func recordRemoval(link: String) throws(RegistryError) -> RegistryChange? {
        try commit([.removal(link: link)]).first
    }

    /// At start-up: every instance the store holds as present whose link is
    /// not in `present` becomes absent, numbered like any removal. Instances
    /// in `present` that the store holds as absent are left alone: record
    /// their arrivals with `recordArrival`, which knows their description.
    @discardableResult
    public func reconcile(present: Set<String>) throws(RegistryError) -> [RegistryChange] {
        try commit([.reconcile(present: present)])
    }

    /// Commits several intents as one atomic batch (for example a start-up
    /// reconciliation together with the arrivals of what is present now).
    ///
    /// - Returns: the changes, in sequence order; intents that changed nothing
    ///   have none.
    @discardableResult
    public func commit(_ intents: [RegistryIntent]) throws(RegistryError) -> [RegistryChange] {
        try cache.withLock { (cache: inout Cache) throws(RegistryError) -> [RegistryChange] in
            let changes = try store.commit(intents, time: clock())
            if let first = changes.first, first.seq != cache.lastSequence + 1 {
                // Another process committed in between: catch up on its changes
                // first so the cache reflects the store. If that read fails the
                // commit still stands; the cache catches up on the next refresh.
                if let missed = try? store.changes(since: cache.lastSequence, limit: nil) {
                    cache.apply(missed)
                }
            }
            cache.apply(changes)
            return changes
        }
    }

    /// Catches up with changes other processes committed to the same store.
    ///
    /// - Returns: the changes this registry had not seen, oldest first.
    @discardableResult
    public func refresh() throws(RegistryError) -> [RegistryChange] {
        try cache.withLock { (cache: inout Cache) throws(RegistryError) -> [RegistryChange] in
            let missed = try store.changes(since: cache.lastSequence, limit: nil)
            cache.apply(missed)
            return missed
        }
    }

    // MARK: Reading

    /// Every present instance, ordered by symbolic link.
    public func present() -> [RegistryRecord] {
        cache.withLock { cache in cache.records.values.filter(\.present) }.sorted(by: Self.linkOrder)
    }

    /// Every instance ever seen, present or absent, ordered by symbolic link.
    public func all() -> [RegistryRecord] {
        cache.withLock { cache in Array(cache.records.values) }.sorted(by: Self.linkOrder)
    }

    /// The record for `link`, present or absent; nil if never seen.
    public func record(for link: String) -> RegistryRecord? {
        cache.withLock { $0.records[link] }
    }

    /// The highest sequence number this registry knows of.
    public var lastSequence: RegistrySequence {
        cache.withLock { $0.lastSequence }
    }

    /// Changes with a sequence number greater than `since`, oldest first, read
    /// from the store (so they include other processes' changes).
    public func changes(since: RegistrySequence, limit: Int? = nil) throws(RegistryError) -> [RegistryChange] {
        try store.changes(since: since, limit: limit)
    }

    // MARK: Remembered facts

    /// A remembered fact, such as a firmware probe result keyed by
    /// `"probe/<vid>:<pid>:<bcdDevice>"`. Facts are not numbered changes.
    public func fact(forKey key: String) throws(RegistryError) -> String? {
        try store.fact(forKey: key)
    }

    /// Remembers `value` under `key`; nil forgets the key.
    public func setFact(_ value: String?, forKey key: String) throws(RegistryError) {
        try store.setFact(value, forKey: key, time: clock())
    }

    /// Every fact whose key starts with `prefix`.
    public func facts(withPrefix prefix: String = "") throws(RegistryError) -> [String: String] {
        try store.facts(withPrefix: prefix)
    }

    private static func linkOrder(_ a: RegistryRecord, _ b: RegistryRecord) -> Bool {
        a.symbolicLink.utf8.lexicographicallyPrecedes(b.symbolicLink.utf8)
    }
}

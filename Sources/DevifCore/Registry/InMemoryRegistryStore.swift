import FoundationEssentials
import Glibc
import Synchronization

/// A registry store that lives in memory: for unit tests and for programs that
/// want no file. It follows the same rules as the SQLite store (it plans with
/// `RegistryChangePlanner`), so tests of the registry against it mean something.
public final class InMemoryRegistryStore: RegistryStore {
    private struct State {
        var records: [String: RegistryRecord] = [:]
        var changes: [RegistryChange] = []
        var lastSequence: RegistrySequence = 0
        var facts: [String: String] = [:]
    }

    private let state = Mutex(State())

    /// An empty store.
    public init() {}

    public func load() throws(RegistryError) -> RegistryContents {
        state.withLock { RegistryContents(records: $0.records, lastSequence: $0.lastSequence) }
    }

    public func commit(_ intents: [RegistryIntent], time: Date) throws(RegistryError) -> [RegistryChange] {
        try state.withLock { (state: inout State) throws(RegistryError) -> [RegistryChange] in
            // Plan against the current state first and apply only after the
            // whole batch planned without error: that is this store's atomicity.
            let records = state.records
            let changes = try RegistryChangePlanner.plan(
                intents, after: state.lastSequence, time: time,
                lookup: { records[$0] },
                presentLinks: { records.values.filter(\.present).map(\.symbolicLink) })
            for change in changes {
                state.records[change.link] = change.record
                state.lastSequence = change.seq
            }
            state.changes.append(contentsOf: changes)
            return changes
        }
    }

    public func changes(since: RegistrySequence, limit: Int?) throws(RegistryError) -> [RegistryChange] {
        state.withLock { state in
            // Changes are stored in sequence order, so find the first newer one by bisection.
            var low = 0, high = state.changes.count
            while low < high {
                let mid = (low + high) / 2
                if state.changes[mid].seq <= since { low = mid + 1 } else { high = mid }
            }
            let tail = state.changes[low...]
            if let limit { return Array(tail.prefix(max(0, limit))) }
            return Array(tail)
        }
    }

    public func fact(forKey key: String) throws(RegistryError) -> String? {
        state.withLock { $0.facts[key] }
    }

    public func setFact(_ value: String?, forKey key: String, time: Date) throws(RegistryError) {
        state.withLock { $0.facts[key] = value }
    }

    public func facts(withPrefix prefix: String) throws(RegistryError) -> [String: String] {
        state.withLock { state in
            state.facts.filter { $0.key.utf8.starts(with: prefix.utf8) }
        }
    }
}

import DevifCore
import DevifLinux
import DevifRegistrySQLite
import Dispatch
import FoundationEssentials
import Synchronization

/// The manager's registry, opened on a thread of its own while the catalog
/// loads and the sources start: opening SQLite and loading the records took
/// 60-90 ms of `devif-usb list` in the lab VM, all of it before the first
/// device was read. Whoever needs the registry (the registry writer's first
/// commit, `DeviceManager.registry`, the MS OS probe memory) waits for it.
///
/// Opening never fails: a file that cannot be opened or loaded leaves a
/// registry in memory and a notice saying why, as before.
final class RegistryOpening: Sendable {
    private struct State {
        var opened: InstanceRegistry?
        var notices: [Notice] = []
        var report: (@Sendable (Notice) -> Void)?
    }
    private let state = Mutex(State())
    private let done = DispatchSemaphore(value: 0)
    private let thread = Mutex<JoinableThread?>(nil)

    /// Opens the SQLite registry at `path` (nil: the default location) on a
    /// thread; without a thread to spare, here.
    init(path: String?) {
        let open = { @Sendable [self] in finish(Self.open(path: path)) }
        if let t = try? JoinableThread(name: "devif-registry", open) { thread.withLock { $0 = t } } else { open() }
    }

    /// A registry open already (one kept in memory, a test's).
    init(ready registry: InstanceRegistry) {
        finish((registry, []))
    }

    /// The registry, once open (waits for it).
    var registry: InstanceRegistry {
        if let opened = state.withLock({ $0.opened }) { return opened }
        done.wait()
        done.signal()  // for the next waiter
        return state.withLock { $0.opened! }
    }

    /// Where the opening's notices go; those said already are passed at once.
    /// Kept only until the opening ends (the pipeline it reaches holds this
    /// opening through its registry writer).
    func report(to report: @escaping @Sendable (Notice) -> Void) {
        let said = state.withLock { s in
            if s.opened == nil { s.report = report }
            defer { s.notices = [] }
            return s.notices
        }
        for n in said { report(n) }
    }

    /// Waits for the opening and its thread to end.
    func wait() {
        _ = registry
        thread.withLock { t in defer { t = nil }; return t }?.join()
    }

    private func finish(_ result: (InstanceRegistry, [Notice])) {
        let report = state.withLock { s in
            s.opened = result.0
            if s.report == nil { s.notices += result.1 }
            defer { s.report = nil }
            return s.report
        }
        done.signal()
        if let report { for n in result.1 { report(n) } }
    }

    private static func open(path: String?) -> (InstanceRegistry, [Notice]) {
        do {
            return (try InstanceRegistry(store: SQLiteRegistryStore(defaultLocationOverriding: path)), [])
        } catch {
            return (inMemory(), [Notice(.registry, "the instance registry is unavailable (\(error)); remembering instances in memory only")])
        }
    }

    /// A new registry kept in memory only.
    static func inMemory() -> InstanceRegistry {
        // Loading an empty store in memory cannot fail.
        guard let memory = try? InstanceRegistry(store: InMemoryRegistryStore()) else {
            preconditionFailure("an empty in-memory registry failed to load")
        }
        return memory
    }
}

/// The registry store of a registry being opened, for what needs a store
/// before it is open (the MS OS probe memory): each call waits for it.
struct OpeningRegistryStore: RegistryStore {
    let opening: RegistryOpening
    private var store: any RegistryStore { opening.registry.store }

    func load() throws(RegistryError) -> RegistryContents { try store.load() }
    func commit(_ intents: [RegistryIntent], time: Date) throws(RegistryError) -> [RegistryChange] {
        try store.commit(intents, time: time)
    }
    func changes(since: RegistrySequence, limit: Int?) throws(RegistryError) -> [RegistryChange] {
        try store.changes(since: since, limit: limit)
    }
    func fact(forKey key: String) throws(RegistryError) -> String? { try store.fact(forKey: key) }
    func setFact(_ value: String?, forKey key: String, time: Date) throws(RegistryError) {
        try store.setFact(value, forKey: key, time: time)
    }
    func facts(withPrefix prefix: String) throws(RegistryError) -> [String: String] {
        try store.facts(withPrefix: prefix)
    }
}

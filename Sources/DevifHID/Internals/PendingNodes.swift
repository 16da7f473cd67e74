// The hidraw nodes the HID source is resolving, and when hidapi's
// enumeration runs for them: once for every node waiting at that moment,
// never once per node. Pure (sysfs and hidapi come in as closures), so the
// batching is unit-tested without either.
import DevifCore

/// When hidapi's enumeration may run: at once for the first node after a
/// quiet spell, then no sooner than `interval` after the previous one ended.
/// Nodes that arrive meanwhile wait for that instant and share one
/// enumeration, so a burst of K arrivals over S seconds costs at most
/// 1 + S / interval enumerations, and hidapi never takes more than
/// d / (d + interval) of the HID thread when one enumeration takes d.
struct EnumerationThrottle {
    var interval: Duration
    /// When the last enumeration ended.
    private(set) var lastEnded: ContinuousClock.Instant?

    init(interval: Duration) {
        self.interval = interval
    }

    /// The first instant at or after `now` at which an enumeration may run.
    func earliest(after now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        guard let lastEnded else { return now }
        return max(now, lastEnded + interval)
    }

    func allows(at now: ContinuousClock.Instant) -> Bool { earliest(after: now) <= now }

    mutating func enumerationEnded(at instant: ContinuousClock.Instant) { lastEnded = instant }
}

struct PendingNodes {
    /// A node waiting to be reported.
    struct Entry {
        var change: HidrawChange
        /// After this, it is reported with what sysfs gave.
        var deadline: ContinuousClock.Instant
        var nextAttempt: ContinuousClock.Instant
        /// Present when the source started (it holds back `.enumerated`).
        var initial: Bool
        /// Arrival order, so a burst is reported in the order it came.
        var order: Int
    }

    /// A node a pass found ready to report.
    struct Resolved {
        var syspath: String
        var snapshot: DeviceSnapshot
        /// hidapi's entry for it was used.
        var answeredByHIDAPI = false
        /// Not ready within the resolve timeout: `snapshot` is what sysfs gave.
        var timedOut = false
    }

    private(set) var entries: [String: Entry] = [:]
    var throttle: EnumerationThrottle
    let resolveTimeout: Duration
    let retryInterval: Duration
    private var counter = 0

    init(resolveTimeout: Duration, retryInterval: Duration, enumerationInterval: Duration) {
        self.resolveTimeout = resolveTimeout
        self.retryInterval = retryInterval
        throttle = EnumerationThrottle(interval: enumerationInterval)
    }

    func contains(_ syspath: String) -> Bool { entries[syspath] != nil }

    /// Whether a node present at start is still waiting.
    var waitingForInitial: Bool { entries.values.contains(where: \.initial) }

    /// When the next pass is due; nil when nothing waits.
    var nextAttempt: ContinuousClock.Instant? { entries.values.map(\.nextAttempt).min() }

    /// Queues a node, due at once. A node already waiting is left as it is.
    mutating func add(_ change: HidrawChange, now: ContinuousClock.Instant, initial: Bool) {
        guard entries[change.syspath] == nil else { return }
        counter += 1
        entries[change.syspath] = Entry(change: change, deadline: now + resolveTimeout, nextAttempt: now,
                                        initial: initial, order: counter)
    }

    /// Drops a waiting node; whether it was waiting.
    @discardableResult
    mutating func remove(_ syspath: String) -> Bool { entries.removeValue(forKey: syspath) != nil }

    /// Drops every waiting node not in `syspaths` (after a rescan).
    mutating func keepOnly(_ syspaths: Set<String>) {
        entries = entries.filter { syspaths.contains($0.key) }
    }

    /// Resolves every node due at `now`, in arrival order. `read` gives a
    /// node's sysfs facts (nil: it is gone, and is dropped). `enumerate` is
    /// hidapi's enumeration: called at most once per pass, only when
    /// `consultHIDAPI` and some due node awaits hidapi's entry, and only when
    /// the throttle allows; otherwise such nodes wait for the throttle's
    /// instant (their facts are read again then). A node hidapi does not list
    /// yet is retried after `retryInterval` until its deadline.
    mutating func resolveDue(now: ContinuousClock.Instant, consultHIDAPI: Bool,
                             read: (HidrawChange) -> HIDResolver.NodeFacts?,
                             enumerate: () -> [String: HIDAPIInfo],
                             clock: () -> ContinuousClock.Instant = { .now }) -> [Resolved] {
        let due = entries.values.filter { $0.nextAttempt <= now }.sorted { $0.order < $1.order }
        guard !due.isEmpty else { return [] }
        var facts: [(Entry, HIDResolver.NodeFacts)] = []
        for entry in due {
            if let f = read(entry.change) { facts.append((entry, f)) } else { entries[entry.change.syspath] = nil }
        }
        var table: [String: HIDAPIInfo]?
        if consultHIDAPI, facts.contains(where: { $0.1.awaitsHIDAPI }), throttle.allows(at: now) {
            table = enumerate()
            throttle.enumerationEnded(at: clock())
        }
        var resolved: [Resolved] = []
        let retryAt = now + retryInterval, unthrottledAt = throttle.earliest(after: now)
        for (entry, f) in facts {
            let syspath = entry.change.syspath
            if consultHIDAPI, f.awaitsHIDAPI, table == nil {
                // Held back by the throttle: hidapi was not asked this pass.
                entries[syspath]?.nextAttempt = unthrottledAt
                continue
            }
            let api = f.devnode.flatMap { table?[$0] }
            switch HIDResolver.outcome(of: f, api: api, hidapiConsulted: consultHIDAPI) {
            case .ready(let snapshot):
                entries[syspath] = nil
                resolved.append(Resolved(syspath: syspath, snapshot: snapshot, answeredByHIDAPI: api != nil))
            case .notYet(let partial):
                if now >= entry.deadline {
                    entries[syspath] = nil
                    resolved.append(Resolved(syspath: syspath, snapshot: partial, timedOut: true))
                } else {
                    entries[syspath]?.nextAttempt = retryAt
                }
            }
        }
        return resolved
    }
}

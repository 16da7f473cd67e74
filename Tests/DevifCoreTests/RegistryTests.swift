import Foundation
import Synchronization
import Testing
@testable import DevifCore
import DevifRegistrySQLite

// MARK: Support shared by the registry test files

/// A clock the tests move by hand.
final class RegistryTestClock: Sendable {
    private let current: Mutex<Date>
    init(_ start: Date = Date(timeIntervalSince1970: 1_700_000_000.123)) { current = Mutex(start) }
    var now: Date { current.withLock { $0 } }
    func advance(seconds: Double) { current.withLock { $0 += seconds } }
    var function: @Sendable () -> Date { { self.now } }
}

/// A private temporary folder, removed by `cleanUp()`.
struct RegistryTestFolder {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("devif-registry-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }
}

/// The two store implementations every behaviour test runs against.
enum RegistryStoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, sqlite
    var testDescription: String { rawValue }

    func makeStore(in folder: RegistryTestFolder) throws -> any RegistryStore {
        switch self {
        case .memory: InMemoryRegistryStore()
        case .sqlite: try SQLiteRegistryStore(path: folder.file("registry.sqlite"))
        }
    }
}

let registryTestGuid = "{a5dcbf10-6530-11d2-901f-00c04fb951ed}"

func registryTestRecord(_ name: String, devnode: String? = nil,
                        attributes: [String: String] = [:]) -> RegistryRecord {
    RegistryRecord(symbolicLink: "usb#vid_1209&pid_0001#\(name)#\(registryTestGuid)",
                   classGuid: registryTestGuid, className: "USB device", kind: .usb,
                   vendorId: 0x1209, productId: 0x0001, serialNumber: name, portChain: "1-1.4",
                   manufacturer: "pid.codes", product: "Test \(name)", devnode: devnode,
                   attributes: attributes)
}

// MARK: Registry behaviour, against both stores

@Suite struct RegistryTests {
    @Test(arguments: RegistryStoreKind.allCases)
    func arrivalRemovalAndReArrivalAreNumberedInOrder(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let clock = RegistryTestClock()
        let registry = try InstanceRegistry(store: kind.makeStore(in: folder), clock: clock.function)
        let a = registryTestRecord("A")
        #expect(registry.lastSequence == 0)

        let first = try #require(try registry.recordArrival(a))
        #expect(first.seq == 1 && first.event == .arrival && first.link == a.symbolicLink)
        #expect(first.record.present && first.record.lastChange == 1)
        let arrivedAt = clock.now

        clock.advance(seconds: 5)
        let removal = try #require(try registry.recordRemoval(link: a.symbolicLink))
        #expect(removal.seq == 2 && removal.event == .removal)
        #expect(!removal.record.present)
        #expect(registry.record(for: a.symbolicLink)?.present == false)
        #expect(registry.present().isEmpty)
        #expect(registry.all().map(\.symbolicLink) == [a.symbolicLink])

        clock.advance(seconds: 5)
        let again = try #require(try registry.recordArrival(a))
        #expect(again.seq == 3 && again.event == .arrival)
        #expect(again.record.firstSeen == RegistryTime.normalized(arrivedAt), "re-arrival keeps firstSeen")
        #expect(again.record.lastSeen == RegistryTime.normalized(clock.now))
        #expect(registry.lastSequence == 3)
        #expect(registry.record(for: a.symbolicLink) == again.record)
        #expect(registry.present() == [again.record])
    }

    @Test(arguments: RegistryStoreKind.allCases)
    func unchangedArrivalAndAbsentRemovalChangeNothing(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let clock = RegistryTestClock()
        let registry = try InstanceRegistry(store: kind.makeStore(in: folder), clock: clock.function)
        let a = registryTestRecord("A", devnode: "/dev/bus/usb/001/004")
        #expect(try registry.recordArrival(a)?.seq == 1)
        clock.advance(seconds: 1)
        #expect(try registry.recordArrival(a) == nil, "same description while present: no change")
        #expect(registry.lastSequence == 1)
        #expect(registry.record(for: a.symbolicLink)?.lastSeen == RegistryTime.normalized(clock.now.addingTimeInterval(-1)))

        var moved = a
        moved.devnode = "/dev/bus/usb/001/005"
        let update = try #require(try registry.recordArrival(moved), "changed description: a numbered arrival")
        #expect(update.seq == 2 && update.event == .arrival && update.record.devnode == moved.devnode)

        #expect(try registry.recordRemoval(link: "usb#never-seen") == nil)
        #expect(try registry.recordRemoval(link: a.symbolicLink)?.seq == 3)
        #expect(try registry.recordRemoval(link: a.symbolicLink) == nil, "already absent")
        #expect(try registry.changes(since: 0).map(\.seq) == [1, 2, 3])
    }

    @Test(arguments: RegistryStoreKind.allCases)
    func reconcileRemovesWhatIsNotReallyPresent(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let registry = try InstanceRegistry(store: kind.makeStore(in: folder))
        let (a, b, c, d) = (registryTestRecord("A"), registryTestRecord("B"), registryTestRecord("C"), registryTestRecord("D"))
        for record in [c, a, b, d] { try registry.recordArrival(record) }
        try registry.recordRemoval(link: d.symbolicLink)
        #expect(registry.lastSequence == 5)

        let removed = try registry.reconcile(present: [b.symbolicLink, "usb#unknown"])
        #expect(removed.map(\.link) == [a.symbolicLink, c.symbolicLink], "in link order; D was already absent")
        #expect(removed.map(\.seq) == [6, 7])
        #expect(removed.allSatisfy { $0.event == .removal && !$0.record.present })
        #expect(registry.present().map(\.symbolicLink) == [b.symbolicLink])
        #expect(registry.all().count == 4)
        #expect(try registry.reconcile(present: [b.symbolicLink]).isEmpty)
        #expect(registry.lastSequence == 7)
    }

    @Test(arguments: RegistryStoreKind.allCases)
    func changesSinceReturnsNewerChangesInOrder(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let registry = try InstanceRegistry(store: kind.makeStore(in: folder))
        var committed: [RegistryChange] = []
        for name in ["A", "B", "C"] { committed.append(try #require(try registry.recordArrival(registryTestRecord(name)))) }
        committed.append(try #require(try registry.recordRemoval(link: registryTestRecord("B").symbolicLink)))

        #expect(try registry.changes(since: 0) == committed)
        #expect(try registry.changes(since: 2) == Array(committed[2...]))
        #expect(try registry.changes(since: 1, limit: 2).map(\.seq) == [2, 3])
        #expect(try registry.changes(since: 4).isEmpty)
        #expect(try registry.changes(since: .max).isEmpty)
        #expect(try registry.changes(since: 0, limit: 0).isEmpty)
    }

    @Test(arguments: RegistryStoreKind.allCases)
    func firstAndLastSeenFollowTheClock(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let clock = RegistryTestClock()
        let registry = try InstanceRegistry(store: kind.makeStore(in: folder), clock: clock.function)
        let a = registryTestRecord("A")
        let t0 = RegistryTime.normalized(clock.now)
        try registry.recordArrival(a)
        clock.advance(seconds: 60)
        let t1 = RegistryTime.normalized(clock.now)
        let removal = try #require(try registry.recordRemoval(link: a.symbolicLink))
        #expect(removal.time == t1)
        let record = try #require(registry.record(for: a.symbolicLink))
        #expect(record.firstSeen == t0 && record.lastSeen == t1)
        #expect(t1.timeIntervalSince(t0) == 60)
    }

    @Test(arguments: RegistryStoreKind.allCases)
    func factsAreRememberedByKeyAndPrefix(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let registry = try InstanceRegistry(store: kind.makeStore(in: folder))
        #expect(try registry.fact(forKey: "probe/1209:0001:0100") == nil)
        try registry.setFact("bulk-ok", forKey: "probe/1209:0001:0100")
        try registry.setFact("stalls", forKey: "probe/1209:0001:0200")
        try registry.setFact("other", forKey: "probf")
        try registry.setFact("", forKey: "probe/empty")
        #expect(try registry.fact(forKey: "probe/1209:0001:0100") == "bulk-ok")
        try registry.setFact("bulk-ok v2", forKey: "probe/1209:0001:0100")
        #expect(try registry.fact(forKey: "probe/1209:0001:0100") == "bulk-ok v2")
        #expect(try registry.facts(withPrefix: "probe/") == [
            "probe/1209:0001:0100": "bulk-ok v2", "probe/1209:0001:0200": "stalls", "probe/empty": "",
        ])
        try registry.setFact(nil, forKey: "probe/1209:0001:0200")
        #expect(try registry.fact(forKey: "probe/1209:0001:0200") == nil)
        #expect(try registry.facts().count == 3)
        #expect(registry.lastSequence == 0, "facts are not numbered changes")
    }

    @Test(arguments: RegistryStoreKind.allCases)
    func aBatchIsAllOrNothing(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let registry = try InstanceRegistry(store: kind.makeStore(in: folder))
        var bad = registryTestRecord("B")
        bad.classGuid = "not-a-guid"
        let error = #expect(throws: RegistryError.self) {
            try registry.commit([.arrival(registryTestRecord("A")), .arrival(bad)])
        }
        #expect(error?.kind == .invalidRecord)
        #expect(error?.description.contains("not-a-guid") == true)
        #expect(registry.lastSequence == 0 && registry.all().isEmpty)
        #expect(try registry.changes(since: 0).isEmpty, "the valid half was not stored either")

        // One batch may touch the same link several times; later intents see earlier ones.
        let a = registryTestRecord("A")
        let changes = try registry.commit([.arrival(a), .removal(link: a.symbolicLink), .arrival(a),
                                           .reconcile(present: [])])
        #expect(changes.map(\.seq) == [1, 2, 3, 4])
        #expect(changes.map(\.event) == [.arrival, .removal, .arrival, .removal])
        #expect(registry.record(for: a.symbolicLink)?.present == false)
    }

    @Test(arguments: RegistryStoreKind.allCases)
    func twoRegistriesOnOneStoreShareTheNumbering(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let store = try kind.makeStore(in: folder)
        // For SQLite, a second connection to the same file, as another process would have.
        let otherStore = kind == .sqlite ? try kind.makeStore(in: folder) : store
        let one = try InstanceRegistry(store: store)
        let two = try InstanceRegistry(store: otherStore)
        let (a, b) = (registryTestRecord("A"), registryTestRecord("B"))
        #expect(try one.recordArrival(a)?.seq == 1)
        #expect(try two.recordArrival(b)?.seq == 2, "numbered from the store, not from two's memory")
        #expect(two.record(for: a.symbolicLink)?.present == true, "two caught up while committing")
        #expect(try two.recordArrival(a) == nil, "decided against the store: A is already present")
        #expect(one.record(for: b.symbolicLink) == nil)
        #expect(try one.refresh().map(\.seq) == [2])
        #expect(one.record(for: b.symbolicLink)?.present == true && one.lastSequence == 2)
        #expect(try one.recordRemoval(link: b.symbolicLink)?.seq == 3)
        #expect(try two.refresh().map(\.seq) == [3])
        #expect(one.all() == two.all())
    }

    @Test(arguments: RegistryStoreKind.allCases)
    func concurrentArrivalsGetUniqueConsecutiveNumbers(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let registry = try InstanceRegistry(store: kind.makeStore(in: folder))
        let seqs = Mutex<[RegistrySequence]>([])
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            for i in 0..<25 {
                do {
                    if let change = try registry.recordArrival(registryTestRecord("T\(thread)-\(i)")) {
                        seqs.withLock { $0.append(change.seq) }
                    }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        #expect(seqs.withLock { $0 }.sorted() == Array(1...200))
        #expect(registry.present().count == 200 && registry.lastSequence == 200)
    }

    @Test func recordsAreValidatedAndGuidsLowercased() throws {
        let registry = try InstanceRegistry(store: InMemoryRegistryStore())
        var upper = registryTestRecord("A")
        upper.classGuid = registryTestGuid.uppercased()
        #expect(try registry.recordArrival(upper)?.record.classGuid == registryTestGuid)

        var empty = registryTestRecord("B"); empty.symbolicLink = ""
        var nul = registryTestRecord("C"); nul.symbolicLink = "usb#a\u{0}b"
        var long = registryTestRecord("D"); long.symbolicLink = String(repeating: "x", count: 5000)
        var braceless = registryTestRecord("E"); braceless.classGuid = "a5dcbf10-6530-11d2-901f-00c04fb951ed"
        for (record, needle) in [(empty, "empty"), (nul, "NUL"), (long, "5000 bytes"), (braceless, "GUID")] {
            let error = #expect(throws: RegistryError.self) { try registry.recordArrival(record) }
            #expect(error?.kind == .invalidRecord)
            #expect(error?.description.contains(needle) == true, "\(error?.description ?? "no error")")
        }
        #expect(registry.lastSequence == 1)
    }

    @Test func recordsRoundTripThroughCodable() throws {
        var record = registryTestRecord("A", devnode: "/dev/hidraw0", attributes: ["bcdDevice": "0100"])
        record.interfaceNumber = 2
        record.kind = .hid
        let decoded = try JSONDecoder().decode(RegistryRecord.self, from: JSONEncoder().encode(record))
        #expect(decoded == record)
    }

    @Test func timesAreKeptToTheMillisecond() {
        let date = Date(timeIntervalSince1970: 1_700_000_000.1236)
        #expect(RegistryTime.milliseconds(date) == 1_700_000_000_124)
        #expect(RegistryTime.normalized(RegistryTime.normalized(date)) == RegistryTime.normalized(date))
        #expect(RegistryTime.milliseconds(Date(timeIntervalSince1970: .infinity)) == 0)
    }
}

// MARK: Default location

@Suite struct RegistryLocationTests {
    @Test func rootUsesTheSystemPath() throws {
        let location = try RegistryLocation.resolve(environment: ["HOME": "/root"], effectiveUID: 0)
        #expect(location.path == "/var/lib/devif/registry.sqlite")
        #expect(location.directory == "/var/lib/devif" && location.directoryMode == 0o755)
        #expect(location.source == .system)
    }

    @Test func usersUseXDGStateHome() throws {
        let xdg = try RegistryLocation.resolve(environment: ["XDG_STATE_HOME": "/home/u/state", "HOME": "/home/u"],
                                               effectiveUID: 1000)
        #expect(xdg.path == "/home/u/state/devif/registry.sqlite" && xdg.directoryMode == 0o700)
        #expect(xdg.source == .user)
        let home = try RegistryLocation.resolve(environment: ["HOME": "/home/u/"], effectiveUID: 1000)
        #expect(home.path == "/home/u/.local/state/devif/registry.sqlite")
        #expect(home.directory == "/home/u/.local/state/devif")
        let relative = try RegistryLocation.resolve(environment: ["XDG_STATE_HOME": "state", "HOME": "/home/u"],
                                                    effectiveUID: 1000)
        #expect(relative.path == "/home/u/.local/state/devif/registry.sqlite", "relative XDG values are ignored")
        let passwd = try RegistryLocation.resolve(environment: [:], effectiveUID: 1000, home: "/home/p")
        #expect(passwd.path == "/home/p/.local/state/devif/registry.sqlite")
        let error = #expect(throws: RegistryError.self) {
            try RegistryLocation.resolve(environment: [:], effectiveUID: 1000)
        }
        #expect(error?.kind == .location && error?.description.contains("DEVIF_REGISTRY") == true)
    }

    @Test func parameterBeatsEnvironmentBeatsDefault() throws {
        let environment = ["DEVIF_REGISTRY": "/srv/reg/r.sqlite", "HOME": "/home/u"]
        let fromEnvironment = try RegistryLocation.resolve(environment: environment, effectiveUID: 1000)
        #expect(fromEnvironment.path == "/srv/reg/r.sqlite" && fromEnvironment.directory == "/srv/reg")
        #expect(fromEnvironment.source == .environment)
        let fromParameter = try RegistryLocation.resolve(explicitPath: "mine.sqlite", environment: environment,
                                                         effectiveUID: 0)
        #expect(fromParameter.path == "mine.sqlite" && fromParameter.directory == ".")
        #expect(fromParameter.source == .parameter)
        let emptyEnvironment = try RegistryLocation.resolve(environment: ["DEVIF_REGISTRY": ""], effectiveUID: 0)
        #expect(emptyEnvironment.source == .system)
    }
}

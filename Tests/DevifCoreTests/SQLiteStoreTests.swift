import CSQLite
import Foundation
import Testing
@testable import DevifCore
@testable import DevifRegistrySQLite

/// Reads one value with a separate raw SQLite connection, to check what is
/// really in the file rather than what the store reports.
private func rawQuery(_ path: String, _ sql: String) -> String? {
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK else {
        sqlite3_close_v2(db)
        return nil
    }
    defer { sqlite3_close_v2(db) }
    var statement: OpaquePointer?
    guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else { return nil }
    defer { sqlite3_finalize(statement) }
    guard sqlite3_step(statement) == SQLITE_ROW, let text = sqlite3_column_text(statement, 0) else { return nil }
    return String(cString: text)
}

private func rawExecute(_ path: String, _ sql: String) -> Bool {
    var db: OpaquePointer?
    defer { sqlite3_close_v2(db) }
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else { return false }
    return sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK
}

/// Fills a registry at `path` and closes it.
private func makeRegistryFile(_ path: String, instances: Int) throws {
    let registry = try InstanceRegistry(store: SQLiteRegistryStore(path: path))
    try registry.commit((0..<instances).map { .arrival(registryTestRecord("R\($0)", attributes: ["pad": String(repeating: "p", count: 200)])) })
}

@Suite struct SQLiteStoreTests {
    @Test func everythingSurvivesReopening() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        let clock = RegistryTestClock()
        var hostile = registryTestRecord("A'); DROP TABLE instances; --",
                                         devnode: "/dev/bus/usb/001/004",
                                         attributes: ["bcdDevice": "0100", "名前": "é\u{0}x", "": ""])
        hostile.serialNumber = "A\u{0}B"
        hostile.manufacturer = "\u{0}"
        hostile.product = ""
        hostile.interfaceNumber = 3
        hostile.kind = .hid
        let (committed, facts): ([RegistryChange], [String: String]) = try {
            let registry = try InstanceRegistry(store: SQLiteRegistryStore(path: path), clock: clock.function)
            var changes = [try #require(try registry.recordArrival(hostile))]
            clock.advance(seconds: 2)
            changes.append(try #require(try registry.recordArrival(registryTestRecord("B"))))
            changes.append(try #require(try registry.recordRemoval(link: registryTestRecord("B").symbolicLink)))
            try registry.setFact("ok", forKey: "probe/1209:0001:0100")
            return (changes, try registry.facts())
        }()

        let reopened = try InstanceRegistry(store: SQLiteRegistryStore(path: path), clock: clock.function)
        #expect(reopened.lastSequence == 3)
        #expect(reopened.record(for: hostile.symbolicLink) == committed[0].record, "every field, byte for byte")
        #expect(reopened.record(for: hostile.symbolicLink)?.serialNumber?.utf8.contains(0) == true)
        #expect(reopened.record(for: registryTestRecord("B").symbolicLink) == committed[2].record)
        #expect(try reopened.changes(since: 0) == committed)
        #expect(try reopened.facts() == facts && facts.count == 1)
        #expect(try reopened.recordArrival(registryTestRecord("C"))?.seq == 4, "numbering continues")
        #expect(try reopened.recordArrival(hostile) == nil, "still present with the same description")
        #expect(rawQuery(path, "SELECT count(*) FROM instances") == "3")
    }

    @Test func aRegistrySwitchedOutOfWALModeIsSwitchedBackWhenOpened() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        try makeRegistryFile(path, instances: 2)
        #expect(rawExecute(path, "PRAGMA journal_mode=DELETE"))
        #expect(rawQuery(path, "PRAGMA journal_mode") == "delete")
        let reopened = try InstanceRegistry(store: SQLiteRegistryStore(path: path))
        #expect(rawQuery(path, "PRAGMA journal_mode") == "wal")
        #expect(reopened.lastSequence == 2)
        #expect(try reopened.recordArrival(registryTestRecord("X"))?.seq == 3)
    }

    @Test func theFileIsInWALModeWithItsIdentity() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        let store = try SQLiteRegistryStore(path: path)
        _ = try store.commit([.arrival(registryTestRecord("A"))], time: Date())
        #expect(rawQuery(path, "PRAGMA journal_mode") == "wal")
        #expect(rawQuery(path, "PRAGMA application_id") == String(SQLiteRegistryStore.applicationID))
        #expect(rawQuery(path, "PRAGMA user_version") == String(SQLiteRegistryStore.schemaVersion))
        #expect(rawQuery(path, "SELECT value FROM meta WHERE key = 'last_sequence'") == "1")
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func aFileOfGarbageIsAClearErrorAndLeftAlone() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        var generator = SystemRandomNumberGenerator()
        let garbage = Data((0..<8192).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try garbage.write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: RegistryError.self) { try SQLiteRegistryStore(path: path) }
        #expect(error?.kind == .corrupt)
        #expect(error?.path == path)
        #expect(error?.description.contains(path) == true)
        #expect(error?.description.contains("recover") == true, "names the recovery: \(error?.description ?? "")")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == garbage, "the damaged file is not modified")
    }

    @Test func aTruncatedDatabaseIsAClearError() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        try makeRegistryFile(path, instances: 300)
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"), "closing checkpointed the WAL")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(size > 16 * 4096)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(size / 2))
        try handle.close()
        let error = #expect(throws: RegistryError.self) {
            let registry = try InstanceRegistry(store: SQLiteRegistryStore(path: path))
            _ = try registry.changes(since: 0)
        }
        #expect(error?.kind == .corrupt, "\(error?.description ?? "no error")")
        #expect(error?.description.contains(path) == true)
    }

    @Test func aNewerSchemaIsRefusedAndLeftUntouched() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        try makeRegistryFile(path, instances: 2)
        #expect(rawExecute(path, "PRAGMA user_version = 7"))
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let error = #expect(throws: RegistryError.self) {
            try SQLiteRegistryStore(path: path, ifCorrupt: .moveAsideAndStartFresh)
        }
        #expect(error?.kind == .newerSchema(found: 7, supported: SQLiteRegistryStore.schemaVersion))
        #expect(error?.description.contains("newer devif") == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(rawQuery(path, "PRAGMA journal_mode") == "wal", "still the registry's own file")
    }

    @Test func anotherProgramsDatabaseIsRefusedAndLeftUntouched() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        #expect(rawExecute(path, "CREATE TABLE mine (x); INSERT INTO mine VALUES (42);"))
        let error = #expect(throws: RegistryError.self) {
            try SQLiteRegistryStore(path: path, ifCorrupt: .moveAsideAndStartFresh)
        }
        #expect(error?.kind == .notARegistry)
        #expect(rawQuery(path, "PRAGMA journal_mode") == "delete", "not switched to WAL")
        #expect(rawQuery(path, "SELECT x FROM mine") == "42")
    }

    @Test func recoverMovesTheDamagedFileAsideAndStartsFresh() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        let garbage = Data(repeating: 0xA5, count: 4096)
        try garbage.write(to: URL(fileURLWithPath: path))
        let when = Date(timeIntervalSince1970: 1_700_000_000)
        let aside = try SQLiteRegistryStore.recover(path: path, now: when)
        #expect(aside == path + ".corrupt-20231114T221320Z")
        #expect(try Data(contentsOf: URL(fileURLWithPath: aside)) == garbage, "kept for inspection")
        #expect(!FileManager.default.fileExists(atPath: path))
        do {
            let registry = try InstanceRegistry(store: SQLiteRegistryStore(path: path))
            #expect(registry.lastSequence == 0 && registry.all().isEmpty)
        }

        // The policy does the same by itself, and does not overwrite the first copy.
        try garbage.write(to: URL(fileURLWithPath: path))
        let store = try SQLiteRegistryStore(path: path, ifCorrupt: .moveAsideAndStartFresh)
        let moved = try #require(store.movedAsidePath)
        #expect(moved.hasPrefix(path + ".corrupt-") && moved != aside)
        #expect(try Data(contentsOf: URL(fileURLWithPath: moved)) == garbage)
        #expect(try store.commit([.arrival(registryTestRecord("A"))], time: Date()).map(\.seq) == [1])
        let third = try SQLiteRegistryStore.recover(path: path, now: when)
        #expect(third == aside + "-2", "an existing copy is never overwritten")
    }

    @Test func theDefaultLocationsFolderIsCreatedWithItsMode() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let user = RegistryLocation(path: folder.file("state/devif/registry.sqlite"),
                                    directory: folder.file("state/devif"), directoryMode: 0o700, source: .user)
        try SQLiteRegistryStore.createDirectory(user)
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: user.directory)[.posixPermissions] as? Int)
        #expect(mode & 0o777 == 0o700)

        let overridden = folder.file("env/sub/registry.sqlite")
        let store = try SQLiteRegistryStore(defaultLocationOverriding: nil,
                                            environment: ["DEVIF_REGISTRY": overridden, "HOME": folder.path])
        #expect(store.path == overridden)
        #expect(FileManager.default.fileExists(atPath: overridden))

        try Data().write(to: URL(fileURLWithPath: folder.file("plain")))
        let blocked = RegistryLocation(path: folder.file("plain/registry.sqlite"), directory: folder.file("plain"),
                                       directoryMode: 0o700, source: .parameter)
        let error = #expect(throws: RegistryError.self) { try SQLiteRegistryStore.createDirectory(blocked) }
        #expect(error?.kind == .location)
    }

    @Test func anUnopenablePathIsAStorageErrorNamingTheFile() throws {
        let path = "/nonexistent-devif-folder/registry.sqlite"
        let error = #expect(throws: RegistryError.self) { try SQLiteRegistryStore(path: path) }
        #expect(error?.kind == .storage)
        #expect(error?.description.contains(path) == true)
    }

    @Test func aLockHeldPastTheTimeoutIsABusyErrorAndNothingIsCommitted() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        let store = try SQLiteRegistryStore(path: path, busyTimeout: .milliseconds(100))
        // Another "process" takes the write lock and keeps it.
        var other: OpaquePointer?
        try #require(sqlite3_open_v2(path, &other, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK)
        defer { sqlite3_close_v2(other) }
        try #require(sqlite3_exec(other, "BEGIN IMMEDIATE", nil, nil, nil) == SQLITE_OK)
        let started = ContinuousClock.now
        let error = #expect(throws: RegistryError.self) {
            try store.commit([.arrival(registryTestRecord("A"))], time: Date())
        }
        let waited = ContinuousClock.now - started
        #expect(error?.kind == .busy, "\(error?.description ?? "no error")")
        #expect(waited >= .milliseconds(50) && waited < .seconds(5), "waited \(waited) for a 100 ms timeout")
        try #require(sqlite3_exec(other, "ROLLBACK", nil, nil, nil) == SQLITE_OK)
        #expect(try store.commit([.arrival(registryTestRecord("A"))], time: Date()).map(\.seq) == [1],
                "the failed commit used no number")
    }

    @Test func aDamagedRowIsACorruptErrorNotACrash() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        try makeRegistryFile(path, instances: 1)
        #expect(rawExecute(path, "UPDATE instances SET vendor_id = 70000, kind = 'floppy'"))
        let store = try SQLiteRegistryStore(path: path)
        let error = #expect(throws: RegistryError.self) { try store.load() }
        #expect(error?.kind == .corrupt)
        #expect(error?.description.contains("R0") == true, "names the record: \(error?.description ?? "")")
    }
}

import CSQLite
import DevifCore
import FoundationEssentials
import Glibc
import Synchronization

/// The registry's persistent store: one SQLite file in WAL mode.
///
/// - Every commit is one `BEGIN IMMEDIATE` transaction. Sequence numbers are
///   allocated inside it from the database, so several processes may open
///   and write the same file and still never number two changes alike.
/// - `synchronous=FULL`: see `open` for why.
/// - A damaged file gives a `RegistryError` of kind `.corrupt` that names the
///   file; `recover(path:)` moves it aside so a new registry can start.
public final class SQLiteRegistryStore: RegistryStore {
    /// The schema this build writes and understands (`PRAGMA user_version`).
    public static let schemaVersion = 1
    /// `PRAGMA application_id` of a devif registry: "DVIF".
    public static let applicationID: Int64 = 0x4456_4946

    /// What `init` does when the file is damaged.
    public enum CorruptFilePolicy: Sendable {
        /// Throw the `.corrupt` error (the default: a person decides).
        case fail
        /// Move the file aside with `recover(path:)` and start a new registry.
        case moveAsideAndStartFresh
    }

    /// The database file.
    public let path: String
    /// Where the damaged file was moved, when `.moveAsideAndStartFresh` had to act.
    public let movedAsidePath: String?

    private let connection: Mutex<SQLiteConnection>

    /// Opens (creating if missing) the registry at `path`.
    ///
    /// - Parameters:
    ///   - busyTimeout: how long to wait for another process's write lock.
    ///   - ifCorrupt: whether a damaged file is an error or is moved aside.
    public init(path: String, busyTimeout: Duration = .seconds(10),
                ifCorrupt: CorruptFilePolicy = .fail) throws(RegistryError) {
        self.path = path
        do {
            self.connection = Mutex(try Self.open(path: path, busyTimeout: busyTimeout))
            self.movedAsidePath = nil
        } catch let error where error.kind == .corrupt && ifCorrupt == .moveAsideAndStartFresh {
            let aside = try Self.recover(path: path)
            self.connection = Mutex(try Self.open(path: path, busyTimeout: busyTimeout))
            self.movedAsidePath = aside
        }
    }

    /// Opens the registry at its default location (see `RegistryLocation`),
    /// creating its folder if missing: 0755 for root's, 0700 for a user's.
    ///
    /// - Parameter path: an explicit path, overriding `DEVIF_REGISTRY` and the default.
    public convenience init(defaultLocationOverriding path: String? = nil,
                            environment: [String: String] = ProcessInfo.processInfo.environment,
                            busyTimeout: Duration = .seconds(10),
                            ifCorrupt: CorruptFilePolicy = .fail) throws(RegistryError) {
        let location = try Self.location(overriding: path, environment: environment)
        try Self.createDirectory(location)
        try self.init(path: location.path, busyTimeout: busyTimeout, ifCorrupt: ifCorrupt)
    }

    /// The default location for this process's user.
    public static func location(overriding path: String? = nil,
                                environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(RegistryError) -> RegistryLocation {
        let uid = geteuid()
        // The password database only when neither a path nor HOME says where
        // (reading it costs more than the rest of the lookup).
        return try RegistryLocation.resolve(explicitPath: path, environment: environment, effectiveUID: uid,
                                            home: getpwuid(uid).flatMap { $0.pointee.pw_dir.map { String(cString: $0) } })
    }

    /// Creates the location's folder (and missing parents) with its mode, if it is missing.
    public static func createDirectory(_ location: RegistryLocation) throws(RegistryError) {
        if let isFolder = isDirectory(at: location.directory) {
            if isFolder { return }
            throw RegistryError(.location, path: location.path,
                                message: "\(location.directory) exists and is not a folder",
                                recovery: "Remove it, or set \(RegistryLocation.environmentVariable) to another path")
        }
        do {
            try FileManager.default.createDirectory(
                atPath: location.directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: Int(location.directoryMode)])
        } catch {
            throw RegistryError(.location, path: location.path,
                                message: "cannot create the folder \(location.directory): \(error)",
                                recovery: "Create it yourself, or set \(RegistryLocation.environmentVariable) to a writable path")
        }
    }

    /// Moves a damaged registry aside, to `<path>.corrupt-<UTC timestamp>`
    /// (its `-wal` file too), so that opening `path` starts a new registry.
    /// The old file is kept for inspection, never deleted.
    ///
    /// - Returns: the path the file was moved to.
    @discardableResult
    public static func recover(path: String, now: Date = Date()) throws(RegistryError) -> String {
        // yyyyMMdd'T'HHmmss'Z' in UTC
        let stamp = now.formatted(Date.ISO8601FormatStyle(dateSeparator: .omitted, timeSeparator: .omitted))
        let base = "\(path).corrupt-\(stamp)"
        var target = base
        var attempt = 1
        while FileManager.default.fileExists(atPath: target) {
            attempt += 1
            target = "\(base)-\(attempt)"
        }
        guard rename(path, target) == 0 else {
            let reason = String(cString: strerror(errno))
            throw RegistryError(.storage, path: path, message: "cannot move the file to \(target): \(reason)",
                                recovery: "Move or delete it yourself; devif then starts a new registry")
        }
        // The WAL belongs to the moved file; a stale -shm is rebuilt by SQLite.
        // Neither may exist; failures here leave nothing the new file would read
        // as its own, except a -wal, so that one must move.
        if FileManager.default.fileExists(atPath: path + "-wal"), rename(path + "-wal", target + "-wal") != 0 {
            let reason = String(cString: strerror(errno))
            throw RegistryError(.storage, path: path, message: "moved the file to \(target) but not its -wal file: \(reason)",
                                recovery: "Move \(path)-wal next to \(target) yourself")
        }
        unlink(path + "-shm")
        return target
    }

    // MARK: Opening

    private static func open(path: String, busyTimeout: Duration) throws(RegistryError) -> SQLiteConnection {
        try mapped(path: path) { () throws -> SQLiteConnection in
            let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
            // NOMUTEX: the store's Mutex already serializes every use of the handle.
            let db = try SQLiteConnection(path: path, flags: flags)
            let milliseconds = min(Int64(Int32.max), max(0, busyTimeout.milliseconds))
            db.setBusyTimeout(milliseconds: Int(milliseconds))

            // Check what the file is before changing anything in it: a foreign
            // database or a newer devif's registry must be left as it is.
            // Reading the header is also where a garbage file fails (SQLITE_NOTADB).
            // One statement, so the pragmas and the schema count come from one
            // snapshot: read apart, another process creating the schema can
            // commit between them (seen: application_id 0 read before its
            // commit, user_version 1 after).
            let (found, journalMode) = try identity(of: db, path: path)

            // Switching to WAL needs an exclusive lock, and SQLite may answer
            // SQLITE_BUSY at once, without its busy handler, while another
            // process is creating the same new file (seen under load): retry
            // until the busy timeout. A registry already in WAL mode (it stays
            // in it) is not asked again: each statement costs a few
            // milliseconds of `devif-usb list` in the lab VM.
            let walDeadline = ContinuousClock.now + busyTimeout
            var mode: String? = journalMode
            while mode?.lowercased() != "wal" {
                let result = Result { () throws(SQLiteError) -> String? in try db.scalarText("PRAGMA journal_mode=WAL") }
                if case .failure(let error) = result, error.primaryCode == SQLITE_BUSY, ContinuousClock.now < walDeadline {
                    usleep(1000)
                    continue
                }
                mode = try result.get()
                break
            }
            guard mode?.lowercased() == "wal" else {
                throw RegistryError(.storage, path: path,
                                    message: "cannot switch the database to WAL mode (it stays in \(mode ?? "unknown") mode)",
                                    recovery: "Put the registry on a local file system that supports shared memory")
            }
            // FULL, not NORMAL: in WAL mode NORMAL already survives a process
            // crash (kill -9) with every committed change, since a commit is in
            // the OS's page cache once write() returns; only FULL also fsyncs the
            // WAL at each commit, so committed changes survive power loss and an
            // OS crash. A sequence number a subscriber has seen must never be
            // handed out again after a reboot, and changes are rare (device
            // plugs), so the fsync per commit is cheap insurance.
            try db.execute("PRAGMA synchronous=FULL")

            // A damaged file should fail here, with a clear error, not at some
            // later read. The registry is small, so the check is quick.
            let check = try db.prepare("PRAGMA quick_check(5)")
            var problems: [String] = []
            while try check.step() { problems.append(check.text(0) ?? "") }
            if problems != ["ok"] {
                throw RegistryError(.corrupt, path: path,
                                    message: "the database is damaged: " + problems.joined(separator: "; "),
                                    recovery: corruptRecovery)
            }

            // A new file gets the schema (an existing registry needs no write).
            guard found == .empty else { return db }
            try db.execute("BEGIN IMMEDIATE")
            do {
                // Again inside the write lock: another process may have created the schema meanwhile.
                if try identity(of: db, path: path).found == .empty {
                    try db.execute(schema)
                }
                try db.execute("COMMIT")
            } catch {
                try? db.execute("ROLLBACK")
                throw error
            }
            return db
        }
    }

    private enum Identity { case empty, registry }

    /// Whether the file is empty (new) or a registry of a schema this build
    /// understands (any other file is an error), and its journal mode.
    private static func identity(of db: borrowing SQLiteConnection, path: String) throws
        -> (found: Identity, journalMode: String?) {
        let read = try db.prepare("""
            SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM pragma_user_version),
                   (SELECT count(*) FROM sqlite_master), (SELECT journal_mode FROM pragma_journal_mode)
            """)
        guard try read.step() else {
            throw RegistryError(.storage, path: path, message: "reading the file's identity returned no row",
                                recovery: "Check that the file is an SQLite database devif may read")
        }
        let (application, version, objects, mode) = (read.int64(0), read.int64(1), read.int64(2), read.text(3))
        return (try identity(application: application, version: version, objects: objects, path: path), mode)
    }

    private static func identity(application: Int64, version: Int64, objects: Int64, path: String) throws -> Identity {
        if application == applicationID {
            if version > Int64(schemaVersion) {
                throw RegistryError(.newerSchema(found: Int(clamping: version), supported: schemaVersion),
                                    path: path,
                                    message: "the registry has schema version \(version), written by a newer devif; this devif understands version \(schemaVersion)",
                                    recovery: "Use the newer devif, or set \(RegistryLocation.environmentVariable) to another file (this one is left untouched)")
            }
            if version == Int64(schemaVersion) { return .registry }
        }
        if application == 0 && version == 0 && objects == 0 { return .empty }
        throw RegistryError(.notARegistry, path: path,
                            message: "the file is an SQLite database but not a devif registry (application_id \(application), user_version \(version), \(objects) schema objects)",
                            recovery: "It was left untouched; set \(RegistryLocation.environmentVariable) to another path, or move this file away if it is not needed")
    }

    static let corruptRecovery =
        "Move the file aside (SQLiteRegistryStore.recover(path:) renames it to <name>.corrupt-<timestamp>) and devif starts a new, empty registry; instances are registered again as they are seen"

    private static let recordColumns = """
        link, class_guid, class_name, kind, vendor_id, product_id, serial_number, \
        interface_number, port_chain, manufacturer, product, devnode, present, \
        first_seen_ms, last_seen_ms, last_change, attributes
        """
    private static let recordColumnCount: Int32 = 17
    private static let recordColumnDefinitions = """
        link TEXT NOT NULL, class_guid TEXT NOT NULL, class_name TEXT, kind TEXT NOT NULL,
        vendor_id INTEGER NOT NULL, product_id INTEGER NOT NULL, serial_number TEXT,
        interface_number INTEGER, port_chain TEXT, manufacturer TEXT, product TEXT, devnode TEXT,
        present INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
        last_change INTEGER NOT NULL, attributes TEXT NOT NULL
        """

    /// Schema version 1. Times are milliseconds since 1970 (UTC); attributes
    /// are a JSON object of strings. `changes` keeps each change with the
    /// record as it was right after it.
    private static let schema = """
        CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO meta (key, value) VALUES ('last_sequence', 0);
        CREATE TABLE instances (\(recordColumnDefinitions), PRIMARY KEY (link)) WITHOUT ROWID;
        CREATE TABLE changes (seq INTEGER PRIMARY KEY NOT NULL,
            event TEXT NOT NULL, time_ms INTEGER NOT NULL, \(recordColumnDefinitions));
        CREATE TABLE facts (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,
            updated_ms INTEGER NOT NULL) WITHOUT ROWID;
        PRAGMA application_id = \(applicationID);
        PRAGMA user_version = \(schemaVersion);
        """

    // MARK: RegistryStore

    public func load() throws(RegistryError) -> RegistryContents {
        try withConnection { db in
            // One read transaction, so records and sequence number agree.
            try db.execute("BEGIN")
            defer { try? db.execute("COMMIT") }
            let statement = try db.prepare("SELECT \(Self.recordColumns) FROM instances")
            var records: [String: RegistryRecord] = [:]
            while try statement.step() {
                let record = try decodeRecord(statement, from: 0)
                records[record.symbolicLink] = record
            }
            return RegistryContents(records: records, lastSequence: try lastSequence(db))
        }
    }

    public func commit(_ intents: [RegistryIntent], time: Date) throws(RegistryError) -> [RegistryChange] {
        guard !intents.isEmpty else { return [] }
        return try withConnection { db in
            // IMMEDIATE takes the write lock now (waiting up to the busy
            // timeout), so the sequence number read below cannot be taken by
            // another process before this transaction commits.
            try db.execute("BEGIN IMMEDIATE")
            do {
                let last = try lastSequence(db)
                let path = self.path
                // One statement for every lookup of this commit (a burst is one commit).
                let select = try db.prepare(Self.selectRecord)
                let changes = try RegistryChangePlanner.plan(
                    intents, after: last, time: time,
                    lookup: { link throws(RegistryError) in
                        try Self.mapped(path: path) { try self.readRecord(select, link: link) }
                    },
                    presentLinks: { () throws(RegistryError) in
                        try Self.mapped(path: path) { try self.readPresentLinks(db) }
                    })
                if let final = changes.last {
                    let upsert = try db.prepare("""
                        INSERT OR REPLACE INTO instances (\(Self.recordColumns))
                        VALUES (\((1...Self.recordColumnCount).map { "?\($0)" }.joined(separator: ", ")))
                        """)
                    let log = try db.prepare("""
                        INSERT INTO changes (seq, event, time_ms, \(Self.recordColumns))
                        VALUES (\((1...Self.recordColumnCount + 3).map { "?\($0)" }.joined(separator: ", ")))
                        """)
                    for change in changes {
                        upsert.reset()
                        try bindRecord(upsert, change.record, from: 1)
                        try upsert.run()
                        log.reset()
                        try log.bind(1, Int64(change.seq))
                        try log.bind(2, change.event.rawValue)
                        try log.bind(3, RegistryTime.milliseconds(change.time))
                        try bindRecord(log, change.record, from: 4)
                        try log.run()
                    }
                    let bump = try db.prepare("UPDATE meta SET value = ?1 WHERE key = 'last_sequence'")
                    try bump.bind(1, Int64(final.seq))
                    try bump.run()
                }
                try db.execute("COMMIT")
                return changes
            } catch {
                try? db.execute("ROLLBACK")
                throw error
            }
        }
    }

    public func changes(since: RegistrySequence, limit: Int?) throws(RegistryError) -> [RegistryChange] {
        guard since < RegistrySequence(Int64.max) else { return [] }
        return try withConnection { db in
            let statement = try db.prepare("""
                SELECT seq, event, time_ms, \(Self.recordColumns) FROM changes
                WHERE seq > ?1 ORDER BY seq LIMIT ?2
                """)
            try statement.bind(1, Int64(since))
            try statement.bind(2, limit.map { Int64(max(0, $0)) } ?? -1)
            var changes: [RegistryChange] = []
            while try statement.step() {
                let seq = statement.int64(0)
                guard seq > 0 else { throw corrupt("change number \(seq) is not positive") }
                guard let event = statement.text(1).flatMap(RegistryEvent.init(rawValue:)) else {
                    throw corrupt("change \(seq) has an unknown event \(statement.text(1)?.debugDescription ?? "NULL")")
                }
                let record = try decodeRecord(statement, from: 3)
                changes.append(RegistryChange(seq: RegistrySequence(seq), event: event, link: record.symbolicLink,
                                              time: RegistryTime.date(milliseconds: statement.int64(2)),
                                              record: record))
            }
            return changes
        }
    }

    public func fact(forKey key: String) throws(RegistryError) -> String? {
        try withConnection { db in
            let statement = try db.prepare("SELECT value FROM facts WHERE key = ?1")
            try statement.bind(1, key)
            return try statement.step() ? statement.text(0) : nil
        }
    }

    public func setFact(_ value: String?, forKey key: String, time: Date) throws(RegistryError) {
        try withConnection { db in
            // A single statement is its own transaction; the busy timeout covers contention.
            if let value {
                let statement = try db.prepare(
                    "INSERT OR REPLACE INTO facts (key, value, updated_ms) VALUES (?1, ?2, ?3)")
                try statement.bind(1, key)
                try statement.bind(2, value)
                try statement.bind(3, RegistryTime.milliseconds(time))
                try statement.run()
            } else {
                let statement = try db.prepare("DELETE FROM facts WHERE key = ?1")
                try statement.bind(1, key)
                try statement.run()
            }
        }
    }

    public func facts(withPrefix prefix: String) throws(RegistryError) -> [String: String] {
        try withConnection { db in
            // Keys sort by their UTF-8 bytes, so all keys with the prefix follow it contiguously.
            let statement = try db.prepare("SELECT key, value FROM facts WHERE key >= ?1 ORDER BY key")
            try statement.bind(1, prefix)
            var facts: [String: String] = [:]
            while try statement.step() {
                let key = statement.text(0) ?? ""
                guard key.utf8.starts(with: prefix.utf8) else { break }
                facts[key] = statement.text(1) ?? ""
            }
            return facts
        }
    }

    // MARK: Rows

    private func lastSequence(_ db: borrowing SQLiteConnection) throws -> RegistrySequence {
        let counter = try db.scalarInt("SELECT value FROM meta WHERE key = 'last_sequence'")
        guard let counter else { throw corrupt("the sequence counter is missing") }
        // Defensive: never number below a change already in the log.
        let highest = try db.scalarInt("SELECT max(seq) FROM changes") ?? 0
        let last = max(counter, highest)
        guard last >= 0 else { throw corrupt("the sequence counter is negative (\(last))") }
        return RegistrySequence(last)
    }

    private static let selectRecord = "SELECT \(recordColumns) FROM instances WHERE link = ?1"

    /// `statement` is ``selectRecord``, reset here before its next use.
    private func readRecord(_ statement: borrowing SQLiteStatement, link: String) throws -> RegistryRecord? {
        statement.reset()
        try statement.bind(1, link)
        guard try statement.step() else { return nil }
        return try decodeRecord(statement, from: 0)
    }

    private func readPresentLinks(_ db: borrowing SQLiteConnection) throws -> [String] {
        let statement = try db.prepare("SELECT link FROM instances WHERE present != 0")
        var links: [String] = []
        while try statement.step() { links.append(statement.text(0) ?? "") }
        return links
    }

    private func bindRecord(_ statement: borrowing SQLiteStatement, _ record: RegistryRecord,
                            from first: Int32) throws {
        let attributes = try Self.encodeAttributes(record.attributes)
        try statement.bind(first + 0, record.symbolicLink)
        try statement.bind(first + 1, record.classGuid)
        try statement.bind(first + 2, record.className)
        try statement.bind(first + 3, record.kind.rawValue)
        try statement.bind(first + 4, Int64(record.vendorId))
        try statement.bind(first + 5, Int64(record.productId))
        try statement.bind(first + 6, record.serialNumber)
        try statement.bind(first + 7, record.interfaceNumber.map { Int64($0) })
        try statement.bind(first + 8, record.portChain)
        try statement.bind(first + 9, record.manufacturer)
        try statement.bind(first + 10, record.product)
        try statement.bind(first + 11, record.devnode)
        try statement.bind(first + 12, Int64(record.present ? 1 : 0))
        try statement.bind(first + 13, RegistryTime.milliseconds(record.firstSeen))
        try statement.bind(first + 14, RegistryTime.milliseconds(record.lastSeen))
        try statement.bind(first + 15, Int64(clamping: record.lastChange))
        try statement.bind(first + 16, attributes)
    }

    /// Reads a record, checking every value: the file is untrusted input.
    private func decodeRecord(_ statement: borrowing SQLiteStatement, from first: Int32) throws -> RegistryRecord {
        guard let link = statement.text(first), !link.isEmpty else { throw corrupt("a record has no symbolic link") }
        func field(_ name: String) -> RegistryError { corrupt("record \(link.debugDescription) has an invalid \(name)") }
        guard let classGuid = statement.text(first + 1) else { throw field("class GUID") }
        guard let kind = statement.text(first + 3).flatMap(RegistryInstanceKind.init(rawValue:)) else {
            throw field("kind")
        }
        let vendor = statement.int64(first + 4), product = statement.int64(first + 5)
        guard let vendorId = UInt16(exactly: vendor) else { throw field("vendor ID (\(vendor))") }
        guard let productId = UInt16(exactly: product) else { throw field("product ID (\(product))") }
        let interface = statement.isNull(first + 7) ? nil : statement.int64(first + 7)
        var interfaceNumber: Int?
        if let interface {
            guard let number = Int(exactly: interface) else { throw field("interface number") }
            interfaceNumber = number
        }
        let lastChange = statement.int64(first + 15)
        guard lastChange >= 0 else { throw field("sequence number (\(lastChange))") }
        guard let attributes = statement.text(first + 16).flatMap(Self.decodeAttributes) else {
            throw field("attributes")
        }
        return RegistryRecord(
            symbolicLink: link, classGuid: classGuid, className: statement.text(first + 2), kind: kind,
            vendorId: vendorId, productId: productId, serialNumber: statement.text(first + 6),
            interfaceNumber: interfaceNumber, portChain: statement.text(first + 8),
            manufacturer: statement.text(first + 9), product: statement.text(first + 10),
            devnode: statement.text(first + 11), present: statement.int64(first + 12) != 0,
            firstSeen: RegistryTime.date(milliseconds: statement.int64(first + 13)),
            lastSeen: RegistryTime.date(milliseconds: statement.int64(first + 14)),
            lastChange: RegistrySequence(lastChange), attributes: attributes)
    }

    private static func encodeAttributes(_ attributes: [String: String]) throws -> String {
        if attributes.isEmpty { return "{}" }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(attributes), as: UTF8.self)
    }

    private static func decodeAttributes(_ text: String) -> [String: String]? {
        if text == "{}" { return [:] }
        return try? JSONDecoder().decode([String: String].self, from: Data(text.utf8))
    }

    private func corrupt(_ what: String) -> RegistryError {
        RegistryError(.corrupt, path: path, message: "the database is damaged: \(what)",
                      recovery: Self.corruptRecovery)
    }

    // MARK: Errors

    /// Runs `body` with the connection, turning any failure into a RegistryError.
    private func withConnection<T: Sendable>(_ body: (inout SQLiteConnection) throws -> T) throws(RegistryError) -> T {
        let path = self.path
        return try connection.withLock { (db: inout SQLiteConnection) throws(RegistryError) -> T in
            try Self.mapped(path: path) { try body(&db) }
        }
    }

    /// Runs `body`, turning SQLite's errors into RegistryErrors that name the file.
    private static func mapped<T: ~Copyable>(path: String, _ body: () throws -> T) throws(RegistryError) -> T {
        do {
            return try body()
        } catch let error as RegistryError {
            throw error
        } catch let error as SQLiteError {
            throw registryError(error, path: path)
        } catch {
            throw RegistryError(.storage, path: path, message: "\(error)")
        }
    }

    static func registryError(_ error: SQLiteError, path: String) -> RegistryError {
        switch error.primaryCode {
        case SQLITE_CORRUPT, SQLITE_NOTADB:
            return RegistryError(.corrupt, path: path,
                                 message: "the file is damaged or is not an SQLite database (\(error))",
                                 recovery: corruptRecovery)
        case SQLITE_BUSY, SQLITE_LOCKED:
            return RegistryError(.busy, path: path,
                                 message: "another process kept the registry locked past the busy timeout (\(error))",
                                 recovery: "Try again; if it persists, find the process holding the file (fuser \(path))")
        case SQLITE_CANTOPEN:
            return RegistryError(.storage, path: path, message: "cannot open the file (\(error))",
                                 recovery: "Check that its folder exists and is writable by this user")
        case SQLITE_READONLY, SQLITE_PERM, SQLITE_AUTH:
            return RegistryError(.storage, path: path, message: "the registry is not writable (\(error))",
                                 recovery: "Check the file's permissions; root's registry is writable only by root")
        case SQLITE_FULL:
            return RegistryError(.storage, path: path, message: "the disk is full (\(error))",
                                 recovery: "Free space on the registry's file system")
        default:
            return RegistryError(.storage, path: path, message: "\(error)")
        }
    }
}

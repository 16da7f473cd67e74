import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// Owns one `sqlite3*` handle; closing it is the deinit's job, so a
/// connection can neither leak nor be closed twice.
struct SQLiteConnection: ~Copyable {
    let handle: OpaquePointer
    let path: String

    /// Opens (creating if allowed) the database file at `path`.
    init(path: String, flags: Int32) throws(SQLiteError) {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = sqliteMessage(db, rc)
            // sqlite3_open_v2 hands back a handle even on failure; it must be closed.
            sqlite3_close_v2(db)
            throw SQLiteError(code: rc, message: message, operation: "open \(path)")
        }
        self.handle = db
        self.path = path
        sqlite3_extended_result_codes(db, 1)
    }

    deinit {
        // close_v2 defers the close until every statement is finalized; with
        // statements owned by ~Copyable values there are none left by now.
        sqlite3_close_v2(handle)
    }

    /// Waits up to about `milliseconds` for another connection's lock.
    ///
    /// Like `sqlite3_busy_timeout`, but retrying every 0.25-0.75 ms instead of
    /// with SQLite's backoff (up to 100 ms between tries): with the backoff, a
    /// process that commits back to back takes the lock again and again while
    /// the other one sleeps, and the other one can starve for its whole timeout.
    func setBusyTimeout(milliseconds: Int) {
        // The budget travels in the context pointer, so the callback captures nothing.
        let tries = max(1, milliseconds * 2)
        sqlite3_busy_handler(handle, { context, count in
            let budget = Int(bitPattern: context)
            guard Int(count) < budget else { return 0 }  // give up: the call returns SQLITE_BUSY
            usleep(UInt32.random(in: 250...750))
            return 1
        }, UnsafeMutableRawPointer(bitPattern: tries))
    }

    /// Runs SQL that returns no rows (several statements allowed).
    func execute(_ sql: String) throws(SQLiteError) {
        try sqliteCall(handle, sql) { sqlite3_exec(handle, sql, nil, nil, nil) }
    }

    /// Compiles one statement.
    func prepare(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        var statement: OpaquePointer?
        try sqliteCall(handle, "prepare \(sql)") {
            sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        }
        guard let statement else {
            // Only happens for empty SQL, which this module never sends.
            throw SQLiteError(code: SQLITE_MISUSE, message: "empty statement", operation: "prepare \(sql)")
        }
        return SQLiteStatement(handle: statement, db: handle, sql: sql)
    }

    /// The text in the first column of the first row of `sql` (for PRAGMAs).
    func scalarText(_ sql: String) throws(SQLiteError) -> String? {
        let statement = try prepare(sql)
        guard try statement.step() else { return nil }
        return statement.text(0)
    }

    /// The integer in the first column of the first row of `sql`.
    func scalarInt(_ sql: String) throws(SQLiteError) -> Int64? {
        let statement = try prepare(sql)
        guard try statement.step() else { return nil }
        return statement.isNull(0) ? nil : statement.int64(0)
    }
}

/// Owns one prepared statement; finalized by the deinit.
struct SQLiteStatement: ~Copyable {
    let handle: OpaquePointer
    let db: OpaquePointer
    let sql: String

    deinit { sqlite3_finalize(handle) }

    /// Binds text (or NULL for nil) to the 1-based parameter `index`. The
    /// whole string is bound by length, so embedded NUL bytes are kept.
    func bind(_ index: Int32, _ value: String?) throws(SQLiteError) {
        guard var value else {
            try sqliteCall(db, "bind NULL to \(sql)") { sqlite3_bind_null(handle, index) }
            return
        }
        let rc = value.withUTF8 { bytes -> Int32 in
            // An empty buffer may have no base address, and a null pointer
            // would bind NULL rather than the empty string.
            guard let base = bytes.baseAddress, bytes.count > 0 else {
                return sqlite3_bind_text(handle, index, "", 0, devif_sqlite_transient)
            }
            return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                sqlite3_bind_text(handle, index, $0, Int32(bytes.count), devif_sqlite_transient)
            }
        }
        try sqliteCall(db, "bind text to \(sql)") { rc }
    }

    /// Binds an integer (or NULL for nil).
    func bind(_ index: Int32, _ value: Int64?) throws(SQLiteError) {
        if let value {
            try sqliteCall(db, "bind integer to \(sql)") { sqlite3_bind_int64(handle, index, value) }
        } else {
            try sqliteCall(db, "bind NULL to \(sql)") { sqlite3_bind_null(handle, index) }
        }
    }

    /// Runs the statement one step: true when a row is ready, false when done.
    func step() throws(SQLiteError) -> Bool {
        try sqliteCall(db, sql) { sqlite3_step(handle) } == SQLITE_ROW
    }

    /// Runs the statement to completion, ignoring any rows.
    func run() throws(SQLiteError) {
        while try step() {}
    }

    /// Makes the statement ready to run again with new bindings.
    func reset() {
        // The error (if any) was already reported by the failing step.
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func isNull(_ column: Int32) -> Bool {
        sqlite3_column_type(handle, column) == SQLITE_NULL
    }

    func int64(_ column: Int32) -> Int64 {
        sqlite3_column_int64(handle, column)
    }

    /// The column's text, with invalid UTF-8 repaired (the file is untrusted); nil for NULL.
    func text(_ column: Int32) -> String? {
        guard !isNull(column) else { return nil }
        // column_text first, then column_bytes: the byte count is only
        // meaningful for the representation the text call produced.
        let bytes = sqlite3_column_text(handle, column)
        let count = Int(sqlite3_column_bytes(handle, column))
        guard let bytes, count > 0 else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }
}

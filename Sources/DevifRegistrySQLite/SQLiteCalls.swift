import CSQLite

/// A failed SQLite call: its (extended) result code, SQLite's message, and
/// what we were doing when it failed.
struct SQLiteError: Error, CustomStringConvertible {
    /// The extended result code (e.g. SQLITE_BUSY_SNAPSHOT); `primaryCode` strips the extension.
    var code: Int32
    var message: String
    var operation: String

    var primaryCode: Int32 { code & 0xff }

    /// The file is damaged or is not a database.
    var isCorruption: Bool { primaryCode == SQLITE_CORRUPT || primaryCode == SQLITE_NOTADB }

    var description: String { "\(operation): \(message) (SQLite code \(code))" }
}

/// The one place where SQLite return codes become results or typed errors:
/// every call into SQLite that returns a result code goes through here
/// (in the manner of swift-system's syscall wrappers).
///
/// - Parameters:
///   - db: the connection, for `sqlite3_errmsg`; nil before a connection exists.
///   - operation: what the call was for, for the error message.
///   - call: the SQLite call; SQLITE_OK, SQLITE_ROW and SQLITE_DONE are successes.
/// - Returns: the successful result code (callers of `sqlite3_step` tell ROW from DONE).
@discardableResult
@inline(__always)
func sqliteCall(_ db: OpaquePointer?, _ operation: @autoclosure () -> String,
                _ call: () -> Int32) throws(SQLiteError) -> Int32 {
    let rc = call()
    switch rc {
    case SQLITE_OK, SQLITE_ROW, SQLITE_DONE:
        return rc
    default:
        throw SQLiteError(code: rc, message: sqliteMessage(db, rc), operation: operation())
    }
}

/// SQLite's message for the connection's latest failure, or the generic text for `rc`.
func sqliteMessage(_ db: OpaquePointer?, _ rc: Int32) -> String {
    // sqlite3_errmsg describes the most recent call on the connection, which
    // is the one that just failed; without a connection use the code's text.
    if let db, let text = sqlite3_errmsg(db) { return String(cString: text) }
    if let text = sqlite3_errstr(rc) { return String(cString: text) }
    return "unknown SQLite error"
}

/// A registry failure: what went wrong, with which file, and what to do.
public struct RegistryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The broad class of failure, for callers that react differently.
    public enum Kind: Sendable, Equatable {
        /// The file is damaged or is not a database at all. Recovery: move it
        /// aside (`SQLiteRegistryStore.recover`) and start a new registry.
        case corrupt
        /// The file is a devif registry written by a newer devif.
        case newerSchema(found: Int, supported: Int)
        /// The file is a valid database that belongs to something else.
        case notARegistry
        /// Another process held the registry locked for longer than the busy timeout.
        case busy
        /// A record given to the registry is not acceptable (the message says which field).
        case invalidRecord
        /// The registry's location cannot be worked out or created.
        case location
        /// Any other storage failure (I/O error, disk full, permissions).
        case storage
    }

    /// The broad class of failure.
    public var kind: Kind
    /// The registry file concerned, if there is one.
    public var path: String?
    /// What was wrong.
    public var message: String
    /// What to do about it, if there is something to do.
    public var recovery: String?

    /// An error of `kind` about the file at `path`, saying `message` and, when
    /// there is something to do, `recovery`.
    public init(_ kind: Kind, path: String? = nil, message: String, recovery: String? = nil) {
        self.kind = kind
        self.path = path
        self.message = message
        self.recovery = recovery
    }

    public var description: String {
        var text = "devif registry"
        if let path { text += " \(path)" }
        text += ": \(message)"
        if let recovery { text += ". \(recovery)" }
        return text
    }
}

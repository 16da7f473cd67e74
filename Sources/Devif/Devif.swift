// A program writes `import Devif` and nothing else: the core types it meets
// (GUID, InterfaceClass, ClassCatalog, SymbolicLink, DeviceKind, ...) come
// from DevifCore, re-exported here.
@_exported import DevifCore

import Logging

extension Logger {
    /// devif's default logger: diagnostics are discarded until the
    /// application passes its own (``DeviceManager/Options/logger``).
    static var discarding: Logger { Logger(label: "devif", factory: { _ in SwiftLogNoOpLogHandler() }) }
}

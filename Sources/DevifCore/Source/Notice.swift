/// Something the manager tells its application once, in one line: a source
/// that cannot run, a fallback, a device that could not be fully read, a
/// registry or class-file problem, an unusual name. Programs act on ``kind``
/// (and ``source``); people read ``description``. The manager's logger gets
/// the same notices.
public struct Notice: Sendable, Hashable, CustomStringConvertible {
    /// What a notice is about.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// A source cannot run at all (no USB bus, no hotplug in libusb,
        /// no usbfs): its devices are not reported.
        case sourceUnavailable
        /// A source runs in a reduced way: kernel uevents without udevd,
        /// hotplug stopped, events lost and rescanned.
        case degraded
        /// One device could not be read in full (descriptors, strings, MS OS
        /// descriptors, its node in time): it is reported with what was read,
        /// or skipped when nothing true can be said.
        case device
        /// The instance registry cannot be opened or written: instances are
        /// remembered in memory only, or changes are not recorded.
        case registry
        /// A class file has a problem (file, line, what was expected).
        case catalog
        /// An instance got an unusual name (the ordinal of identical devices).
        case naming
    }

    /// The source it comes from (`usb`, `hid`); nil for the manager itself.
    public var source: String?
    /// What it is about.
    public var kind: Kind
    /// One line, saying what happened and, where there is one, what to do.
    public var message: String

    /// A notice of `kind`; a source's notices get their source from the manager.
    public init(source: String? = nil, _ kind: Kind, _ message: String) {
        self.source = source
        self.kind = kind
        self.message = message
    }

    /// `usb: message`, or the message alone for the manager's own.
    public var description: String { source.map { "\($0): \(message)" } ?? message }
}

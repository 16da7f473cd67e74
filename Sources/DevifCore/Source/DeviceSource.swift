/// The first stage of the pipeline: something that turns OS events into
/// ready device snapshots (libusb for USB devices, udev + hidapi for hidraw).
///
/// A source owns its thread(s): nobody outside ever pumps its event loop. It
/// reports through one sink, from one thread at a time, in the order things
/// happened; the sink returns quickly (it hands the event on, or, when the
/// manager is idle, applies an arrival or removal right there; notice
/// handlers never run in it).
public protocol DeviceSource: AnyObject, Sendable {
    /// A short name for logs and errors: `usb`, `hid`.
    var name: String { get }

    /// Starts the source. First every device already present is reported as
    /// an arrival, then `.enumerated` once, then live arrivals and removals
    /// until `stop()`. Throws when the source cannot run at all (e.g. no
    /// usbfs): the caller says so once and carries on with the other sources.
    func start(_ sink: @escaping @Sendable (SourceEvent) -> Void) throws(SourceError)

    /// Stops the source's threads; no sink call begins after it returns.
    /// Idempotent.
    func stop()
}

/// What a source reports.
public enum SourceEvent: Sendable {
    /// A device is ready: descriptors read, node present, access known. Or
    /// it left before it was ready (``DeviceSnapshot/leftBeforeReady``): then
    /// it carries what was known, and its removal follows.
    case arrived(DeviceSnapshot)
    /// The device whose snapshot had this ``DeviceSnapshot/sourceKey`` is gone.
    case removed(key: String)
    /// Every device present at start has been reported.
    case enumerated
    /// Something worth one line in the log (e.g. "udevd is not running: using
    /// kernel uevents"), without its source (the manager adds it). Said once,
    /// not per device.
    case notice(Notice)
}

extension DeviceSnapshot {
    /// The key a source uses to report this device's removal: its device
    /// node, unique among present devices (`/dev/bus/usb/001/005`,
    /// `/dev/hidraw3`), else its sysfs path.
    public var sourceKey: String { devnode ?? sysfsPath ?? "\(kind):\(vendorID):\(productID)" }
}

/// Why a source could not start.
public struct SourceError: Error, Sendable, CustomStringConvertible {
    /// Which source (`usb`, `hid`).
    public var source: String
    /// One line: what is missing and what to do.
    public var message: String
    /// The OS or library code behind it, when there is one.
    public var code: Int32?

    /// An error of source `source` saying `message`, with the OS or library code if any.
    public init(source: String, message: String, code: Int32? = nil) {
        self.source = source
        self.message = message
        self.code = code
    }

    public var description: String { "\(source): \(message)" }
}

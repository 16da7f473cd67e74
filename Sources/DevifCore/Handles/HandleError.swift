/// Why opening an instance or an operation on its handle failed, for USB
/// and HID alike: one error type for every handle call. It says
/// - ``code``: what kind of failure (compare with the static members,
///   `error == .deviceRemoved`; equality looks at the code only),
/// - ``link``: the instance's symbolic link,
/// - ``advice``: what to do about it,
/// - ``detail``: the operation that failed, e.g. `bulk IN 0x81 on /dev/bus/usb/001/004`,
/// - ``underlying``: the system's own answer, an errno or a libusb status, when there was one.
public struct HandleError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kinds of failure (each static member of the same name says more).
    public enum Code: Sendable, Hashable {
        /// The device went away.
        case deviceRemoved
        /// The handle is closed.
        case closed
        /// No instance with the link was ever seen.
        case unknownLink
        /// The instance is known but not plugged in.
        case notPresent
        /// A USB call on a HID instance or the reverse.
        case wrongKind
        /// The process may not open the device node.
        case permissionDenied
        /// Another program or a kernel driver holds it.
        case busy
        /// Not done within the timeout.
        case timeout
        /// The Task was cancelled, or the stream stopped.
        case cancelled
        /// The device stalled the endpoint or request.
        case stall
        /// Not supported by the device or driver.
        case unsupported
        /// An argument was refused.
        case invalidArgument
        /// Another I/O failure.
        case io
        /// The handle table is full.
        case tooManyHandles
    }

    /// What the system said below devif.
    public enum Underlying: Sendable, Hashable, CustomStringConvertible {
        /// An errno from a system call (`open`, `read`, `write`, `ioctl`).
        case errno(Int32)
        /// A libusb status (`LIBUSB_ERROR_*`), its code and name.
        case libusb(code: Int32, name: String)

        public var description: String {
            switch self {
            case .errno(let code): "errno \(code)"
            case .libusb(let code, let name): "\(name) \(code)"
            }
        }
    }

    /// What kind of failure.
    public let code: Code
    /// The symbolic link of the instance ("" when not known).
    public let link: String
    /// What failed below: the call and its subject, e.g. `open(/dev/hidraw3)`.
    public let detail: String
    /// The errno or libusb status behind the failure, when there was one.
    public let underlying: Underlying?

    /// A handle error from its parts (the backends map their own errors with it).
    package init(_ code: Code, link: String, detail: String, underlying: Underlying? = nil) {
        self.code = code
        self.link = link
        self.detail = detail
        self.underlying = underlying
    }

    /// The same error, naming `link`.
    package func naming(_ link: String) -> HandleError {
        HandleError(code, link: link, detail: detail, underlying: underlying)
    }

    public static func == (a: HandleError, b: HandleError) -> Bool { a.code == b.code }

    /// The device went away: pending I/O ended, and every later call fails
    /// with this. Close the handle; open the link again once it is back.
    public static let deviceRemoved = HandleError(.deviceRemoved, link: "", detail: "")
    /// The handle was closed (or is a stale copy of a closed one).
    public static let closed = HandleError(.closed, link: "", detail: "")
    /// No instance with this link was ever seen.
    public static let unknownLink = HandleError(.unknownLink, link: "", detail: "")
    /// The instance is known but not plugged in now.
    public static let notPresent = HandleError(.notPresent, link: "", detail: "")
    /// A USB operation on a HID instance or the reverse.
    public static let wrongKind = HandleError(.wrongKind, link: "", detail: "")
    /// This process may not open the device node (`devif-usb rules check`
    /// prints the udev rule that fixes it).
    public static let permissionDenied = HandleError(.permissionDenied, link: "", detail: "")
    /// Another program or a kernel driver holds the interface.
    public static let busy = HandleError(.busy, link: "", detail: "")
    /// The operation did not complete within its timeout.
    public static let timeout = HandleError(.timeout, link: "", detail: "")
    /// The operation's Task was cancelled, or its stream stopped.
    public static let cancelled = HandleError(.cancelled, link: "", detail: "")
    /// The device stalled the endpoint or request (clear the halt to go on).
    public static let stall = HandleError(.stall, link: "", detail: "")
    /// The device or its driver does not support the operation.
    public static let unsupported = HandleError(.unsupported, link: "", detail: "")
    /// An argument was refused: an endpoint, interface or setting the device
    /// does not have, a size out of range, or a report too long.
    public static let invalidArgument = HandleError(.invalidArgument, link: "", detail: "")
    /// Another I/O failure; ``detail`` and ``underlying`` say which.
    public static let io = HandleError(.io, link: "", detail: "")
    /// Every slot of the manager's handle table is in use: close some handles.
    public static let tooManyHandles = HandleError(.tooManyHandles, link: "", detail: "")

    /// What happened and what to do about it, in a sentence.
    public var advice: String {
        switch code {
        case .deviceRemoved: "the device was removed; close the handle and open the link again once it is back"
        case .closed: "the handle is closed; open the link again"
        case .unknownLink: "no instance with this symbolic link has been seen (see `devif-usb list --all`)"
        case .notPresent: "the instance is not plugged in now (see `devif-usb list --all`); plug it in and open again"
        case .wrongKind: "wrong kind of instance for this call"
        case .permissionDenied: "permission denied on the device node (`devif-usb rules check` prints the udev rule that fixes it)"
        case .busy: "busy: another program or a kernel driver holds it"
        case .timeout: "timed out"
        case .cancelled: "cancelled"
        case .stall: "the device stalled the request (endpoint halted, or request not supported; clear the halt to go on)"
        case .unsupported: "not supported by the device or driver"
        case .invalidArgument: "invalid argument"
        case .io: "I/O error (check the cable or hub; replug the device)"
        case .tooManyHandles: "too many open handles; close some"
        }
    }

    /// `LINK: advice (detail; underlying)`.
    public var description: String {
        let subject = link.isEmpty ? "" : "\(link): "
        let below = [detail.isEmpty ? nil : detail, underlying?.description].compactMap { $0 }
        return subject + advice + (below.isEmpty ? "" : " (" + below.joined(separator: "; ") + ")")
    }

    package static func unknownLink(_ link: String) -> HandleError { HandleError(.unknownLink, link: link, detail: "") }
    package static func notPresent(_ link: String) -> HandleError { HandleError(.notPresent, link: link, detail: "") }
    package static func wrongKind(_ link: String, _ detail: String) -> HandleError { HandleError(.wrongKind, link: link, detail: detail) }
    package static func invalid(_ link: String, _ detail: String) -> HandleError { HandleError(.invalidArgument, link: link, detail: detail) }
    package static func removed(_ link: String, _ detail: String = "") -> HandleError { HandleError(.deviceRemoved, link: link, detail: detail) }
    package static func closed(_ link: String, _ detail: String = "") -> HandleError { HandleError(.closed, link: link, detail: detail) }
    package static func busy(_ link: String, _ detail: String) -> HandleError { HandleError(.busy, link: link, detail: detail) }

    package init(_ error: HandleTableError, link: String) {
        switch error {
        case .staleHandle(let h): self.init(.closed, link: link, detail: "handle \(h)")
        case .deviceRemoved(let h): self.init(.deviceRemoved, link: link, detail: "handle \(h)")
        case .tableFull(let n): self.init(.tooManyHandles, link: link, detail: "all \(n) handles are open")
        }
    }
}

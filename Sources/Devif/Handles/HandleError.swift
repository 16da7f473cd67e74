import DevifCore
import DevifHID
import DevifUSB

/// Why opening an instance or an operation on its handle failed, for USB
/// and HID alike. Compare with the static members (`error == .deviceRemoved`);
/// equality looks at the kind only. The message names the symbolic link and
/// says what to do.
public struct HandleError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: Sendable, Equatable {
        case deviceRemoved, closed, unknownLink, notPresent, wrongKind, permissionDenied, busy,
             timeout, cancelled, stall, unsupported, invalidArgument, io, tooManyHandles
    }

    private let code: Code
    /// The symbolic link of the instance ("" when not known).
    public let link: String
    /// What failed below (the libusb or hidraw call and its message).
    public let detail: String

    private init(_ code: Code, link: String, detail: String) {
        self.code = code
        self.link = link
        self.detail = detail
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
    /// The operation's Task was cancelled.
    public static let cancelled = HandleError(.cancelled, link: "", detail: "")
    /// The device stalled the endpoint or request (clear the halt to go on).
    public static let stall = HandleError(.stall, link: "", detail: "")
    /// The device or its driver does not support the operation.
    public static let unsupported = HandleError(.unsupported, link: "", detail: "")
    /// An argument was refused: an endpoint, interface or setting the device
    /// does not have, or a report too long.
    public static let invalidArgument = HandleError(.invalidArgument, link: "", detail: "")
    /// Another I/O failure; ``detail`` says which.
    public static let io = HandleError(.io, link: "", detail: "")
    /// Every slot of the manager's handle table is in use: close some handles.
    public static let tooManyHandles = HandleError(.tooManyHandles, link: "", detail: "")

    public var description: String {
        let what: String = switch code {
        case .deviceRemoved: "the device was removed; close the handle and open the link again once it is back"
        case .closed: "the handle is closed; open the link again"
        case .unknownLink: "no instance with this symbolic link has been seen (see `devif-usb list --all`)"
        case .notPresent: "the instance is not plugged in now (see `devif-usb list --all`); plug it in and open again"
        case .wrongKind: "wrong kind of instance for this call"
        case .permissionDenied: "permission denied on the device node (`devif-usb rules check` prints the udev rule that fixes it)"
        case .busy: "busy: another program or a kernel driver holds it"
        case .timeout: "timed out"
        case .cancelled: "cancelled"
        case .stall: "the device stalled the request (endpoint halted, or request not supported)"
        case .unsupported: "not supported by the device or driver"
        case .invalidArgument: "invalid argument"
        case .io: "I/O error"
        case .tooManyHandles: "too many open handles; close some"
        }
        let subject = link.isEmpty ? "" : "\(link): "
        return subject + what + (detail.isEmpty ? "" : " (\(detail))")
    }

    static func unknownLink(_ link: String) -> HandleError { HandleError(.unknownLink, link: link, detail: "") }
    static func notPresent(_ link: String) -> HandleError { HandleError(.notPresent, link: link, detail: "") }
    static func wrongKind(_ link: String, _ detail: String) -> HandleError { HandleError(.wrongKind, link: link, detail: detail) }
    static func invalid(_ link: String, _ detail: String) -> HandleError { HandleError(.invalidArgument, link: link, detail: detail) }
    static func removed(_ link: String, _ detail: String = "") -> HandleError { HandleError(.deviceRemoved, link: link, detail: detail) }
    static func closed(_ link: String, _ detail: String = "") -> HandleError { HandleError(.closed, link: link, detail: detail) }
    static func busy(_ link: String, _ detail: String) -> HandleError { HandleError(.busy, link: link, detail: detail) }

    init(_ error: USBError, link: String) {
        let code: Code = switch error {
        case .noDevice: .deviceRemoved
        case .closed: .closed
        case .access: .permissionDenied
        case .busy: .busy
        case .timeout: .timeout
        case .cancelled, .interrupted: .cancelled
        case .pipe: .stall
        case .notSupported: .unsupported
        case .notFound, USBError(libusbCode: -2, operation: ""): .invalidArgument
        default: .io
        }
        self.init(code, link: link, detail: error.description)
    }

    init(_ error: HIDError, link: String) {
        let code: Code = switch error {
        case .deviceRemoved, .noSuchDevice: .deviceRemoved
        case .closed: .closed
        case .permissionDenied: .permissionDenied
        case .timeout: .timeout
        case .unsupported: .unsupported
        case .reportTooLong: .invalidArgument
        default: .io
        }
        self.init(code, link: link, detail: error.description)
    }

    init(_ error: HandleTableError, link: String) {
        switch error {
        case .staleHandle(let h): self.init(.closed, link: link, detail: "handle \(h)")
        case .deviceRemoved(let h): self.init(.deviceRemoved, link: link, detail: "handle \(h)")
        case .tableFull(let n): self.init(.tooManyHandles, link: link, detail: "all \(n) handles are open")
        }
    }
}

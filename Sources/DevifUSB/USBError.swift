import CLibUSB

/// A failed libusb call: which call, libusb's code, and a message that says
/// what went wrong and what to do about it.
///
/// Compare with the static members (`error == .timeout`); equality looks at
/// the code only, not at the call that failed.
public struct USBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// libusb's error codes (`enum libusb_error`); anything unknown is `.other`.
    private enum Code: Sendable, Equatable {
        case io, invalidParameter, access, noDevice, notFound, busy, timeout, overflow, pipe,
             interrupted, noMemory, notSupported, other
        /// Not libusb codes: a transfer cancelled on request (Task
        /// cancellation, a stream stopped), and a call on a closed handle.
        case cancelled, closed

        init(_ raw: Int32) {
            switch raw {
            case LIBUSB_ERROR_IO.rawValue: self = .io
            case LIBUSB_ERROR_INVALID_PARAM.rawValue: self = .invalidParameter
            case LIBUSB_ERROR_ACCESS.rawValue: self = .access
            case LIBUSB_ERROR_NO_DEVICE.rawValue: self = .noDevice
            case LIBUSB_ERROR_NOT_FOUND.rawValue: self = .notFound
            case LIBUSB_ERROR_BUSY.rawValue: self = .busy
            case LIBUSB_ERROR_TIMEOUT.rawValue: self = .timeout
            case LIBUSB_ERROR_OVERFLOW.rawValue: self = .overflow
            case LIBUSB_ERROR_PIPE.rawValue: self = .pipe
            case LIBUSB_ERROR_INTERRUPTED.rawValue: self = .interrupted
            case LIBUSB_ERROR_NO_MEM.rawValue: self = .noMemory
            case LIBUSB_ERROR_NOT_SUPPORTED.rawValue: self = .notSupported
            default: self = .other
            }
        }

        var message: String {
            switch self {
            case .io: "input/output error talking to the device (check the cable or hub; replug it)"
            case .invalidParameter: "invalid parameter (a bug in devif: please report it)"
            case .access: "permission denied: this process may not open the device node (a udev rule granting access fixes this)"
            case .noDevice: "the device is gone (unplugged or reset)"
            case .notFound: "not found (no such configuration, interface, endpoint or string)"
            case .busy: "busy: another program or a kernel driver is using it"
            case .timeout: "the device did not answer in time"
            case .overflow: "the device sent more data than was asked for"
            case .pipe: "the device stalled the request (endpoint halted or request not supported)"
            case .interrupted: "interrupted"
            case .noMemory: "out of memory"
            case .notSupported: "not supported by this kernel or libusb build"
            case .other: "libusb failed for an unknown reason (set LIBUSB_DEBUG=4 to see why)"
            case .cancelled: "the transfer was cancelled"
            case .closed: "the handle is closed (open the device again)"
            }
        }
    }

    private let code: Code
    /// The libusb return code (`LIBUSB_ERROR_*`, negative).
    public let libusbCode: Int32
    /// The libusb call that failed, e.g. `libusb_open`.
    public let operation: String

    /// Wraps a negative libusb return code from `operation`.
    public init(libusbCode: Int32, operation: String) {
        self.code = Code(libusbCode)
        self.libusbCode = libusbCode
        self.operation = operation
    }

    private init(_ code: Code, libusbCode: Int32, operation: String) {
        self.code = code
        self.libusbCode = libusbCode
        self.operation = operation
    }

    /// The error a finished transfer's status means; nil for `.completed`.
    init?(transferStatus status: TransferStatus, operation: String) {
        switch status {
        case .completed: return nil
        case .timedOut: self.init(libusbCode: LIBUSB_ERROR_TIMEOUT.rawValue, operation: operation)
        case .cancelled: self.init(.cancelled, libusbCode: LIBUSB_ERROR_INTERRUPTED.rawValue, operation: operation)
        case .stall: self.init(libusbCode: LIBUSB_ERROR_PIPE.rawValue, operation: operation)
        case .noDevice: self.init(libusbCode: LIBUSB_ERROR_NO_DEVICE.rawValue, operation: operation)
        case .overflow: self.init(libusbCode: LIBUSB_ERROR_OVERFLOW.rawValue, operation: operation)
        case .failed: self.init(libusbCode: LIBUSB_ERROR_IO.rawValue, operation: operation)
        }
    }

    /// The same error, naming `operation` (e.g. the handle and endpoint).
    func naming(_ operation: String) -> USBError { USBError(code, libusbCode: libusbCode, operation: operation) }

    /// A call devif refused before reaching the device (a wrong endpoint, size or state).
    static func invalid(_ operation: String) -> USBError {
        USBError(libusbCode: LIBUSB_ERROR_INVALID_PARAM.rawValue, operation: operation)
    }
    static func cancelled(_ operation: String) -> USBError {
        USBError(.cancelled, libusbCode: LIBUSB_ERROR_INTERRUPTED.rawValue, operation: operation)
    }
    static func closed(_ operation: String) -> USBError {
        USBError(.closed, libusbCode: LIBUSB_ERROR_OTHER.rawValue, operation: operation)
    }
    static func removed(_ operation: String) -> USBError {
        USBError(.noDevice, libusbCode: LIBUSB_ERROR_NO_DEVICE.rawValue, operation: operation)
    }

    public var description: String {
        switch code {
        case .cancelled, .closed: return "\(operation): \(code.message)"
        default:
            let name = String(cString: libusb_error_name(libusbCode))
            return "\(operation): \(code.message) [\(name) \(libusbCode)]"
        }
    }

    public static func == (lhs: USBError, rhs: USBError) -> Bool { lhs.code == rhs.code }

    public static let io = USBError(libusbCode: LIBUSB_ERROR_IO.rawValue, operation: "")
    public static let access = USBError(libusbCode: LIBUSB_ERROR_ACCESS.rawValue, operation: "")
    public static let noDevice = USBError(libusbCode: LIBUSB_ERROR_NO_DEVICE.rawValue, operation: "")
    public static let notFound = USBError(libusbCode: LIBUSB_ERROR_NOT_FOUND.rawValue, operation: "")
    public static let busy = USBError(libusbCode: LIBUSB_ERROR_BUSY.rawValue, operation: "")
    public static let timeout = USBError(libusbCode: LIBUSB_ERROR_TIMEOUT.rawValue, operation: "")
    public static let overflow = USBError(libusbCode: LIBUSB_ERROR_OVERFLOW.rawValue, operation: "")
    public static let pipe = USBError(libusbCode: LIBUSB_ERROR_PIPE.rawValue, operation: "")
    public static let interrupted = USBError(libusbCode: LIBUSB_ERROR_INTERRUPTED.rawValue, operation: "")
    public static let notSupported = USBError(libusbCode: LIBUSB_ERROR_NOT_SUPPORTED.rawValue, operation: "")
    public static let other = USBError(libusbCode: LIBUSB_ERROR_OTHER.rawValue, operation: "")
    /// The device went away (unplugged, reset, or the manager saw it leave):
    /// pending transfers end with this, later calls fail fast with it.
    /// Same as ``noDevice``; open the device again once it is back.
    public static let deviceRemoved = USBError.removed("")
    /// The transfer was cancelled (its Task was cancelled, or its stream stopped).
    public static let cancelled = USBError.cancelled("")
    /// The handle was closed.
    public static let closed = USBError.closed("")
}

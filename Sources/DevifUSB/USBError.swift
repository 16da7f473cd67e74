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

    public var description: String {
        let name = String(cString: libusb_error_name(libusbCode))
        return "\(operation): \(code.message) [\(name) \(libusbCode)]"
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
}

import CLibUSB
import DevifCore
import Glibc

/// A failed libusb call: which call, libusb's code, and a message that says
/// what went wrong and what to do about it.
///
/// Compare with the static members (`error == .timeout`); equality looks at
/// the code only, not at the call that failed.
package struct USBError: Error, Sendable, Equatable, CustomStringConvertible {
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

    /// Who said no: libusb (its code is real), a system call (its errno),
    /// or devif itself before reaching either (the code only classifies).
    package enum Origin: Sendable, Hashable { case libusb, errno(Int32), devif }

    private let code: Code
    /// The libusb return code (`LIBUSB_ERROR_*`, negative).
    package let libusbCode: Int32
    /// The libusb call that failed, e.g. `libusb_open`.
    package let operation: String
    package let origin: Origin

    /// Wraps a negative libusb return code from `operation`.
    package init(libusbCode: Int32, operation: String) {
        self.init(Code(libusbCode), libusbCode: libusbCode, operation: operation, origin: .libusb)
    }

    /// A failed system call, classified as the libusb code `like`.
    package init(errno: Int32, like libusbCode: Int32, operation: String) {
        self.init(Code(libusbCode), libusbCode: libusbCode, operation: operation, origin: .errno(errno))
    }

    /// A call devif refused itself, classified as the libusb code `like`.
    package init(refusing libusbCode: Int32, operation: String) {
        self.init(Code(libusbCode), libusbCode: libusbCode, operation: operation, origin: .devif)
    }

    private init(_ code: Code, libusbCode: Int32, operation: String, origin: Origin = .devif) {
        self.code = code
        self.libusbCode = libusbCode
        self.operation = operation
        self.origin = origin
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
    func naming(_ operation: String) -> USBError { USBError(code, libusbCode: libusbCode, operation: operation, origin: origin) }

    /// A call devif refused before reaching the device (a wrong endpoint, size or state).
    static func invalid(_ operation: String) -> USBError {
        USBError(refusing: LIBUSB_ERROR_INVALID_PARAM.rawValue, operation: operation)
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

    package var description: String {
        switch code {
        case .cancelled, .closed: return "\(operation): \(code.message)"
        default:
            if case .errno(let e) = origin { return "\(operation): \(code.message) [\(String(cString: strerror(e))), errno \(e)]" }
            if origin == .devif { return "\(operation): \(code.message)" }
            let name = String(cString: libusb_error_name(libusbCode))
            return "\(operation): \(code.message) [\(name) \(libusbCode)]"
        }
    }

    package static func == (lhs: USBError, rhs: USBError) -> Bool { lhs.code == rhs.code }

    package static let io = USBError(libusbCode: LIBUSB_ERROR_IO.rawValue, operation: "")
    package static let access = USBError(libusbCode: LIBUSB_ERROR_ACCESS.rawValue, operation: "")
    package static let noDevice = USBError(libusbCode: LIBUSB_ERROR_NO_DEVICE.rawValue, operation: "")
    package static let notFound = USBError(libusbCode: LIBUSB_ERROR_NOT_FOUND.rawValue, operation: "")
    package static let busy = USBError(libusbCode: LIBUSB_ERROR_BUSY.rawValue, operation: "")
    package static let timeout = USBError(libusbCode: LIBUSB_ERROR_TIMEOUT.rawValue, operation: "")
    package static let overflow = USBError(libusbCode: LIBUSB_ERROR_OVERFLOW.rawValue, operation: "")
    package static let pipe = USBError(libusbCode: LIBUSB_ERROR_PIPE.rawValue, operation: "")
    package static let interrupted = USBError(libusbCode: LIBUSB_ERROR_INTERRUPTED.rawValue, operation: "")
    package static let notSupported = USBError(libusbCode: LIBUSB_ERROR_NOT_SUPPORTED.rawValue, operation: "")
    package static let other = USBError(libusbCode: LIBUSB_ERROR_OTHER.rawValue, operation: "")
    package static let invalidParameter = USBError(libusbCode: LIBUSB_ERROR_INVALID_PARAM.rawValue, operation: "")
    /// The device went away (unplugged, reset, or the manager saw it leave):
    /// pending transfers end with this, later calls fail fast with it.
    /// Same as ``noDevice``; open the device again once it is back.
    package static let deviceRemoved = USBError.removed("")
    /// The transfer was cancelled (its Task was cancelled, or its stream stopped).
    package static let cancelled = USBError.cancelled("")
    /// The handle was closed.
    package static let closed = USBError.closed("")
}

extension HandleError {
    /// A USB failure as the one error type handles throw.
    package init(_ error: USBError, link: String) {
        let code: Code = switch error {
        case .noDevice: .deviceRemoved
        case .closed: .closed
        case .access: .permissionDenied
        case .busy: .busy
        case .timeout: .timeout
        case .cancelled, .interrupted: .cancelled
        case .pipe: .stall
        case .notSupported: .unsupported
        case .notFound, .invalidParameter: .invalidArgument
        default: .io
        }
        let underlying: Underlying? = switch error.origin {
        case .libusb: .libusb(code: error.libusbCode, name: String(cString: libusb_error_name(error.libusbCode)))
        case .errno(let e): .errno(e)
        case .devif: nil
        }
        self.init(code, link: link, detail: error.operation, underlying: underlying)
    }
}

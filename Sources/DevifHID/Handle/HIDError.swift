import DevifCore
import DevifLinux
import Glibc

/// Why an operation on a ``HIDDevice`` failed. Compare with the static
/// members (`error == .deviceRemoved`); the message says what to do.
package struct HIDError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case permissionDenied
        case noSuchDevice
        case deviceRemoved
        case timeout
        case closed
        case unsupported
        case reportTooLong
        case io
    }

    private let code: Code
    /// The errno behind the failure, when there was one.
    package let errno: Int32?
    /// What failed: the call and its subject, e.g. `open(/dev/hidraw3)`.
    package let context: String?

    private init(_ code: Code, errno: Int32? = nil, context: String? = nil) {
        self.code = code
        self.errno = errno
        self.context = context
    }

    /// Two errors are the same kind regardless of errno and context, so
    /// `error == .deviceRemoved` works as a pattern.
    package static func == (a: HIDError, b: HIDError) -> Bool { a.code == b.code }
    package func hash(into hasher: inout Hasher) { hasher.combine(code) }

    /// The hidraw node may not be opened by this user (EACCES/EPERM).
    package static let permissionDenied = HIDError(.permissionDenied)
    /// There is no such hidraw node (ENOENT/ENXIO/ENODEV at open).
    package static let noSuchDevice = HIDError(.noSuchDevice)
    /// The device went away while open (ENODEV, EIO or POLLHUP after removal).
    package static let deviceRemoved = HIDError(.deviceRemoved)
    /// No report arrived within the timeout.
    package static let timeout = HIDError(.timeout)
    /// The handle was closed (before or during the call).
    package static let closed = HIDError(.closed)
    /// The kernel or the device does not support the request (EINVAL,
    /// ENOTSUPP, EOPNOTSUPP, ENOSYS, ENOTTY, EPIPE).
    package static let unsupported = HIDError(.unsupported)
    /// A report or buffer exceeds what fits (the kernel's 16384-byte HID
    /// limit, or the input stream's inline buffer).
    package static let reportTooLong = HIDError(.reportTooLong)
    /// Any other failed system call; ``errno`` says which error.
    package static let io = HIDError(.io)

    static func tooLong(_ what: String) -> HIDError { HIDError(.reportTooLong, context: what) }
    static func closed(_ what: String) -> HIDError { HIDError(.closed, context: what) }
    static func removed(_ what: String, errno: Int32? = nil) -> HIDError {
        HIDError(.deviceRemoved, errno: errno, context: what)
    }
    static func timedOut(_ what: String) -> HIDError { HIDError(.timeout, context: what) }
    static func invalid(_ what: String) -> HIDError { HIDError(.io, errno: EINVAL, context: what) }
    static func io(_ error: LinuxError) -> HIDError {
        HIDError(.io, errno: error.code, context: "\(error.call)(\(error.subject ?? "?"))")
    }

    /// Kernel-internal ENOTSUPP (524), which some HID drivers let through ioctls.
    static let kernelENOTSUPP: Int32 = 524

    /// Maps a failed open of a hidraw node.
    static func opening(_ error: LinuxError) -> HIDError {
        let context = "\(error.call)(\(error.subject ?? "?"))"
        switch error.code {
        case EACCES, EPERM: return HIDError(.permissionDenied, errno: error.code, context: context)
        case ENOENT, ENXIO, ENODEV, ENOTDIR: return HIDError(.noSuchDevice, errno: error.code, context: context)
        default: return HIDError(.io, errno: error.code, context: context)
        }
    }

    /// Maps a failed call on an open node (write, ioctl).
    static func operating(_ error: LinuxError) -> HIDError {
        let context = "\(error.call)(\(error.subject ?? "?"))"
        switch error.code {
        case ENODEV: return HIDError(.deviceRemoved, errno: error.code, context: context)
        case EINVAL, kernelENOTSUPP, EOPNOTSUPP, ENOSYS, ENOTTY, EPIPE:
            return HIDError(.unsupported, errno: error.code, context: context)
        default: return HIDError(.io, errno: error.code, context: context)
        }
    }

    package var description: String {
        let prefix = context.map { "\($0): " } ?? ""
        let errnoText = errno.map { code -> String in
            let name = LinuxError(code: code, call: "").codeName ?? (code == Self.kernelENOTSUPP ? "ENOTSUPP" : "errno \(code)")
            return " (\(code == Self.kernelENOTSUPP ? "Operation not supported" : String(cString: strerror(code))), \(name))"
        } ?? ""
        let text: String
        switch code {
        case .permissionDenied:
            text = "permission denied on the hidraw node; install a udev rule granting access, e.g. "
                + "KERNEL==\"hidraw*\", ATTRS{idVendor}==\"VVVV\", TAG+=\"uaccess\" (or MODE=\"0660\", GROUP=\"plugdev\"), then replug"
        case .noSuchDevice: text = "no such HID device (the hidraw node does not exist); it may have been unplugged"
        case .deviceRemoved: text = "the HID device was removed; close this handle and open the device again once it is back"
        case .timeout: text = "timed out waiting for an input report"
        case .closed: text = "the HID handle is closed"
        case .unsupported:
            text = "the kernel driver or the device does not support this request (for HIDIOCGINPUT: some drivers on "
                + "kernel 6.1 do not; use the input report stream instead)"
        case .reportTooLong: text = "report too long"
        case .io: text = "HID I/O failed"
        }
        return prefix + text + errnoText
    }
}

extension HandleError {
    /// A HID failure as the one error type handles throw.
    package init(_ error: HIDError, link: String) {
        let code: Code = switch error {
        case .deviceRemoved, .noSuchDevice: .deviceRemoved
        case .closed: .closed
        case .permissionDenied: .permissionDenied
        case .timeout: .timeout
        case .unsupported: .unsupported
        case .reportTooLong: .invalidArgument
        default: .io
        }
        self.init(code, link: link, detail: error.context ?? "", underlying: error.errno.map { .errno($0) })
    }
}

import DevifCore
import DevifLinux
import Glibc

/// A USB/IP operation that failed: what kind of failure, the system error
/// under it if any, what was being done, and what to do about it.
public struct USBIPError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure, for a program to act on.
    public enum Code: Sendable, Hashable {
        /// The host could not be reached, did not answer, or closed early.
        case unreachable
        /// The host answered with something that is not USB/IP as expected.
        case protocolViolation
        /// usbipd refused the device (not exported, busy, gone); the status
        /// it gave is in ``USBIPError/status``.
        case refused
        /// No free vhci port of the device's speed on this host.
        case noFreePort
        /// vhci-hcd (importing) or usbip-host (exporting) is not loaded.
        case moduleNotLoaded
        /// This process may not do it (attaching and detaching need root).
        case permissionDenied
        /// Nothing is attached that matches.
        case notAttached
        /// Another system call failed; see ``USBIPError/errno``.
        case system
    }

    /// What kind of failure.
    public var code: Code
    /// The errno under it, when a system call failed.
    public var errno: Int32?
    /// usbipd's status, for ``Code/refused``.
    public var status: UInt32?
    /// What failed and, where there is one, what to do.
    public var message: String

    /// An error from its parts.
    public init(_ code: Code, _ message: String, errno: Int32? = nil, status: UInt32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
        self.status = status
    }

    /// ``message``.
    public var description: String { message }

    /// A failed system call while doing `what`.
    static func system(_ error: LinuxError, _ what: String) -> USBIPError {
        switch error.code {
        case EACCES, EPERM:
            USBIPError(.permissionDenied, "\(what): \(error): attaching and detaching need root (run it with sudo)", errno: error.code)
        default:
            USBIPError(.system, "\(what): \(error)", errno: error.code)
        }
    }

    /// A failure between this host and usbipd, while doing `what`.
    static func transport(_ error: USBIPTransportError, _ what: String) -> USBIPError {
        let errno: Int32? = switch error {
        case .connect(_, let e), .io(_, let e): e.code
        default: nil
        }
        return USBIPError(.unreachable, "\(what): \(error)", errno: errno)
    }
}

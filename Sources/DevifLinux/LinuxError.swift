import Glibc

/// A failed system call: which call, on what, and the errno it set.
public struct LinuxError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The errno value (e.g. `EACCES`).
    public var code: Int32
    /// The call that failed (`open`, `recvfrom`, ...).
    public var call: String
    /// What it was called on (a path, a socket's purpose), if useful.
    public var subject: String?

    public init(code: Int32, call: String, subject: String? = nil) {
        self.code = code
        self.call = call
        self.subject = subject
    }

    /// The current thread's errno for `call`.
    static func current(_ call: String, _ subject: String? = nil) -> LinuxError {
        LinuxError(code: errno, call: call, subject: subject)
    }

    /// The symbolic name of ``code`` (`EACCES`) when it is a common one.
    public var codeName: String? { Self.names[code] }

    /// `open(/dev/hidraw0): Permission denied (EACCES)`.
    public var description: String {
        let target = subject.map { "(\($0))" } ?? ""
        let name = codeName.map { " (\($0))" } ?? " (errno \(code))"
        return "\(call)\(target): \(String(cString: strerror(code)))\(name)"
    }

    private static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO", EBADF: "EBADF",
        EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EBUSY: "EBUSY", EEXIST: "EEXIST",
        ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", ENFILE: "ENFILE",
        EMFILE: "EMFILE", ENOSPC: "ENOSPC", EROFS: "EROFS", EPIPE: "EPIPE", ENAMETOOLONG: "ENAMETOOLONG",
        ENOSYS: "ENOSYS", ELOOP: "ELOOP", EPROTONOSUPPORT: "EPROTONOSUPPORT", EAFNOSUPPORT: "EAFNOSUPPORT",
        ENOBUFS: "ENOBUFS", ECONNREFUSED: "ECONNREFUSED", ECONNRESET: "ECONNRESET", EHOSTUNREACH: "EHOSTUNREACH",
        ENETUNREACH: "ENETUNREACH", EINPROGRESS: "EINPROGRESS", EADDRINUSE: "EADDRINUSE", ETIMEDOUT: "ETIMEDOUT", ESHUTDOWN: "ESHUTDOWN", EOVERFLOW: "EOVERFLOW",
    ]
}

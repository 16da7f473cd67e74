import Glibc

/// An owned eventfd, used to wake a thread blocked in `poll()` (e.g. to make
/// a monitor thread notice `stop()`). Closed when the owner goes away.
///
/// Typical use: the monitor thread polls ``fileDescriptor`` for `POLLIN`
/// beside its event source; `stop()` calls ``signal()``. The counter stays
/// set until ``drain()``, so a signal sent before the thread polls is not lost.
public struct EventFD: ~Copyable, Sendable {
    /// The descriptor to poll for `POLLIN`.
    public let fileDescriptor: Int32

    /// A non-blocking, close-on-exec eventfd with counter 0.
    public init() throws(LinuxError) {
        fileDescriptor = try Syscalls.eventfd(0, Syscalls.eventfdNonBlocking)
    }

    /// Adds 1 to the counter: wakes every poller. Safe from any thread.
    public func signal() {
        var one: UInt64 = 1
        // Fails only when the counter would overflow (it is then set anyway).
        _ = withUnsafeBytes(of: &one) { try? Syscalls.write(fileDescriptor, $0, subject: "eventfd") }
    }

    /// Resets the counter to 0; returns whether it was set.
    @discardableResult
    public func drain() -> Bool {
        var value: UInt64 = 0
        let count = withUnsafeMutableBytes(of: &value) { (try? Syscalls.read(fileDescriptor, into: $0, subject: "eventfd")) ?? 0 }
        return count == 8 && value > 0
    }

    /// Whether the counter is set, without resetting it.
    public var isSignaled: Bool {
        var fds = [pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)]
        return ((try? Syscalls.poll(&fds, timeoutMilliseconds: 0)) ?? 0) > 0
    }

    deinit { Syscalls.close(fileDescriptor) }
}

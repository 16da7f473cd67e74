import DevifCore
import Glibc

/// The kernel's own uevents (`NETLINK_KOBJECT_UEVENT`, multicast group 1):
/// what udevd itself listens to. devif uses it when udevd is not running
/// (containers, initramfs, minimal systems), where libudev's monitor would
/// never deliver anything.
///
/// Events arrive as soon as the kernel has added the device (sysfs and the
/// devtmpfs node exist), before any udev rule ran: node permissions and
/// symbolic links are whatever devtmpfs made.
///
///     let monitor = try KernelUeventMonitor(subsystems: ["hidraw"])
///     // poll monitor.fileDescriptor for POLLIN, then:
///     while let received = try monitor.receive() {
///         switch received {
///         case .uevent(let event): ...            // event.action, event.devpath, event["DEVNAME"]
///         case .overflow: ...                     // events were lost: rescan sysfs
///         }
///     }
///
/// Not thread-safe: one thread receives (the owning monitor thread).
public final class KernelUeventMonitor {
    /// The socket, non-blocking: poll it for `POLLIN`.
    public let fileDescriptor: Int32
    /// Only events whose `SUBSYSTEM` is in this set are returned; nil: all.
    public let subsystems: Set<String>?
    /// How many messages were dropped as malformed or not from the kernel
    /// (for diagnostics; a healthy system keeps this at 0).
    public private(set) var rejectedMessages = 0

    private var buffer: UnsafeMutableRawBufferPointer

    /// What ``receive()`` returns.
    public enum Received: Sendable {
        /// One kernel uevent of a wanted subsystem.
        case uevent(Uevent)
        /// The socket's buffer overflowed (`ENOBUFS`): events were lost, so the
        /// caller must rescan what it follows.
        case overflow
    }

    /// Opens and binds the socket. Fails with `EPROTONOSUPPORT` on kernels
    /// without uevent netlink (never on a normal Linux).
    public init(subsystems: Set<String>? = nil) throws(LinuxError) {
        let fd = try Syscalls.socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                                     Self.netlinkKobjectUevent, subject: "NETLINK_KOBJECT_UEVENT")
        // A large buffer so a burst (a hub with many devices) is not lost;
        // FORCE needs CAP_NET_ADMIN, the plain one is capped by rmem_max.
        let wanted: Int32 = 4 << 20
        if (try? Syscalls.setSocketOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, wanted)) == nil {
            try? Syscalls.setSocketOption(fd, SOL_SOCKET, SO_RCVBUF, wanted)
        }
        // struct sockaddr_nl { u16 family; u16 pad; u32 pid; u32 groups; }:
        // pid 0 lets the kernel pick our port id; group 1 is the kernel's
        // uevents (udevd re-broadcasts processed ones on group 2).
        let address = Self.netlinkAddress(pid: 0, groups: 1)
        do throws(LinuxError) {
            try Syscalls.bind(fd, address: address, subject: "NETLINK_KOBJECT_UEVENT group 1")
        } catch {
            Syscalls.close(fd)
            throw error
        }
        fileDescriptor = fd
        self.subsystems = subsystems
        // Kernel uevents are at most a few KiB; anything longer is not one.
        buffer = .allocate(byteCount: 16 * 1024, alignment: 8)
    }

    /// `NETLINK_KOBJECT_UEVENT` from `<linux/netlink.h>` (not in the Glibc module).
    static let netlinkKobjectUevent: Int32 = 15

    /// The bytes of a `struct sockaddr_nl` (host byte order, 12 bytes).
    static func netlinkAddress(pid: UInt32, groups: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt16(AF_NETLINK)) { bytes += $0 }
        bytes += [0, 0]
        withUnsafeBytes(of: pid) { bytes += $0 }
        withUnsafeBytes(of: groups) { bytes += $0 }
        return bytes
    }

    /// Whether a sender address is the kernel's: AF_NETLINK, port id 0.
    static func isFromKernel(_ sender: [UInt8]) -> Bool {
        guard sender.count >= 12 else { return false }
        let (family, pid) = sender.withUnsafeBytes {
            ($0.loadUnaligned(fromByteOffset: 0, as: UInt16.self), $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        }
        return family == UInt16(AF_NETLINK) && pid == 0
    }

    deinit {
        Syscalls.close(fileDescriptor)
        buffer.deallocate()
    }

    /// The next wanted event, or nil when none is waiting. Messages of other
    /// subsystems, malformed ones and any not sent by the kernel are skipped.
    public func receive() throws(LinuxError) -> Received? {
        while true {
            let count: Int
            let sender: [UInt8]
            do throws(LinuxError) {
                (count, sender) = try Syscalls.receive(fileDescriptor, into: buffer, flags: Int32(MSG_TRUNC),
                                                      subject: "kernel uevents")
            } catch {
                switch error.code {
                case EAGAIN, EWOULDBLOCK: return nil
                case ENOBUFS: return .overflow
                default: throw error
                }
            }
            // Only the kernel (port id 0) may speak on group 1; a truncated
            // message is not a uevent we can trust.
            guard Self.isFromKernel(sender), count <= buffer.count else {
                rejectedMessages += 1
                continue
            }
            guard let event = try? Uevent(netlinkMessage: UnsafeRawBufferPointer(rebasing: buffer[0..<count])) else {
                rejectedMessages += 1
                continue
            }
            if let subsystems, !subsystems.contains(event.subsystem ?? "") { continue }
            return .uevent(event)
        }
    }
}

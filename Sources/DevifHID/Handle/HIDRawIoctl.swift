import DevifLinux
import Glibc

/// The hidraw ioctl request numbers (`<linux/hidraw.h>`), computed here
/// because the `_IOC` macros do not import into Swift.
enum HIDRawIoctl {
    private static let iocWrite: UInt = 1
    private static let iocRead: UInt = 2
    private static let type = UInt(UInt8(ascii: "H"))

    /// `_IOC(dir, 'H', nr, size)` with Linux's generic layout
    /// (nr 8 bits, type 8, size 14, dir 2).
    private static func ioc(_ direction: UInt, _ number: UInt, _ size: Int) -> UInt {
        (direction << 30) | (UInt(size) << 16) | (type << 8) | number
    }

    /// The largest report the kernel handles (`HID_MAX_BUFFER_SIZE`), and
    /// the largest size an ioctl number can carry (14 bits) is just above it.
    static let maximumReportLength = 16384
    /// `HID_MAX_DESCRIPTOR_SIZE`.
    static let maximumDescriptorLength = 4096

    /// `HIDIOCGRDESCSIZE`: `_IOR('H', 0x01, int)`.
    static let getDescriptorSize = ioc(iocRead, 0x01, MemoryLayout<Int32>.size)
    /// `HIDIOCGRDESC`: `_IOR('H', 0x02, struct hidraw_report_descriptor)` (u32 size + 4096 bytes).
    static let getDescriptor = ioc(iocRead, 0x02, 4 + maximumDescriptorLength)
    /// `HIDIOCSFEATURE(len)`.
    static func setFeature(_ length: Int) -> UInt { ioc(iocWrite | iocRead, 0x06, length) }
    /// `HIDIOCGFEATURE(len)`.
    static func getFeature(_ length: Int) -> UInt { ioc(iocWrite | iocRead, 0x07, length) }
    /// `HIDIOCGINPUT(len)` (Linux 5.11+).
    static func getInput(_ length: Int) -> UInt { ioc(iocWrite | iocRead, 0x0A, length) }

    /// `ioctl(fd, request, buffer)`, retrying EINTR: the result (a byte count
    /// for the report ioctls). A thin private wrapper: DevifLinux's Syscalls
    /// has no ioctl, and hidraw is its only user so far.
    static func call(_ fd: Int32, _ request: UInt, _ buffer: UnsafeMutableRawPointer,
                     name: String, path: String) throws(LinuxError) -> Int {
        while true {
            let rc = Glibc.ioctl(fd, request, buffer)
            if rc >= 0 { return Int(rc) }
            if errno != EINTR { throw LinuxError(code: errno, call: "ioctl \(name)", subject: path) }
        }
    }
}

import DevifCore
import Glibc

/// Reading sysfs defensively: attribute files are small, but a device or a
/// driver chose some of their contents, so every read is capped.
public enum Sysfs {
    /// Reads at most `limit` bytes of a file (sysfs attributes are one page
    /// at most; binary ones like `report_descriptor` up to 4 KiB).
    public static func read(_ path: String, limit: Int = 4096) throws(LinuxError) -> [UInt8] {
        let fd = try Syscalls.open(path, O_RDONLY)
        defer { Syscalls.close(fd) }
        var result: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(limit, 4096)), alignment: 1)
        defer { chunk.deallocate() }
        while result.count < limit {
            let want = min(chunk.count, limit - result.count)
            let count = try Syscalls.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<want]), subject: path)
            if count == 0 { break }
            result += chunk[0..<count]
        }
        return result
    }

    /// A text attribute without its trailing newline, UTF-8 with invalid
    /// bytes replaced; nil when the file does not exist or cannot be read.
    public static func string(_ path: String, limit: Int = 4096) -> String? {
        guard var bytes = try? read(path, limit: limit) else { return nil }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A hex attribute (`idVendor`, `bcdDevice`, `bInterfaceNumber`).
    public static func hex(_ path: String) -> UInt64? {
        guard let text = string(path, limit: 64) else { return nil }
        return UInt64(text.trimmingASCIIWhitespace(), radix: 16)
    }

    /// Writes `text` to an existing file in one write: a sysfs store takes
    /// its input in one call (`bind`, `attach`); also used for small files
    /// devif keeps beside them. A short write is an EIO.
    package static func write(_ path: String, _ text: String, create mode: mode_t? = nil) throws(LinuxError) {
        let fd = try Syscalls.open(path, mode == nil ? O_WRONLY : O_WRONLY | O_CREAT | O_TRUNC, mode: mode ?? 0)
        defer { Syscalls.close(fd) }
        let bytes = Array(text.utf8)
        // Array's closures rethrow untyped: the typed error rides a Result.
        let written = try bytes.withUnsafeBytes { raw in
            Result { () throws(LinuxError) in try Syscalls.write(fd, raw, subject: path) }
        }.get()
        if written != bytes.count { throw LinuxError(code: EIO, call: "write", subject: path) }
    }

    /// A decimal attribute (`busnum`, `devnum`, `bAlternateSetting`); nil when
    /// absent, empty or not a number.
    package static func decimal(_ path: String) -> Int? {
        guard let text = string(path, limit: 64) else { return nil }
        return Int(text.trimmingASCIIWhitespace())
    }

    /// The names in a directory (no `.`/`..`); empty when it cannot be read.
    package static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    /// Whether `path` exists (for sysfs: whether that device is still there).
    public static func exists(_ path: String) -> Bool { Syscalls.access(path, F_OK) == nil }

    /// A directory's `uevent` file, parsed; nil when unreadable or malformed.
    public static func uevent(of directory: String) -> Uevent? {
        guard let bytes = try? read(directory + "/uevent", limit: 8192) else { return nil }
        return try? Uevent(ueventFile: bytes)
    }

    /// The name of the subsystem a device directory belongs to (the last
    /// component of its `subsystem` link), e.g. `usb`, `hid`, `hidraw`.
    public static func subsystem(of directory: String) -> String? {
        guard let target = try? Syscalls.readlink(directory + "/subsystem") else { return nil }
        return target.split(separator: "/").last.map(String.init)
    }

    /// The nearest ancestor of `directory` (itself excluded) in `subsystem`
    /// whose uevent `DEVTYPE` is `devtype` (when given). `directory` must be
    /// a canonical path under `/sys/devices` (see `Syscalls.realpath`).
    public static func ancestor(of directory: String, subsystem: String, devtype: String? = nil) -> String? {
        var path = parent(of: directory)
        while let current = path, current.hasPrefix("/sys/devices/") {
            if Self.subsystem(of: current) == subsystem,
               devtype == nil || uevent(of: current)?["DEVTYPE"] == devtype {
                return current
            }
            path = parent(of: current)
        }
        return nil
    }

    /// The path without its last component; nil for `/`.
    public static func parent(of path: String) -> String? {
        guard let slash = path.lastIndex(of: "/"), path != "/" else { return nil }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The last path component.
    public static func name(of path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}

/// Whether udevd is running: its control socket (`/run/udev/control`, made
/// by systemd-udevd and eudev) exists and accepts a connection. A socket file
/// left behind by a killed udevd refuses connections (`ECONNREFUSED`): not
/// running. When this process may not connect (`EACCES`, not root), the
/// socket's existence decides. Without udevd, libudev's monitor receives
/// nothing and device nodes keep devtmpfs's default permissions.
public func udevIsRunning(controlSocket: String = "/run/udev/control") -> Bool {
    guard let info = try? Syscalls.stat(controlSocket), info.st_mode & S_IFMT == S_IFSOCK else { return false }
    guard let fd = try? Syscalls.socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0) else { return true }
    defer { Syscalls.close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let path = Array(controlSocket.utf8)
    guard path.count < MemoryLayout.size(ofValue: address.sun_path) else { return true }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    return rc == 0 || (errno != ECONNREFUSED && errno != ENOENT)
}

extension String {
    /// Without leading and trailing ASCII whitespace (space, tab, newline,
    /// vertical tab, form feed, carriage return).
    package func trimmingASCIIWhitespace() -> String {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || (0x09...0x0D).contains($0) }
        let bytes = Array(utf8)
        guard let first = bytes.firstIndex(where: { !isSpace($0) }),
              let last = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}

// MARK: One device node

/// A character device node's device number and its sysfs directory.
package struct CharacterDeviceNode: Sendable, Equatable {
    /// The node as given (`/dev/bus/usb/001/002`, `/dev/hidraw0`).
    package var node: String
    package var major: UInt32
    package var minor: UInt32
    /// The device's canonical sysfs directory (`/sys/devices/...`): what
    /// `/sys/dev/char/MAJOR:MINOR` resolves to.
    package var directory: String

    /// Splits a `dev_t` as glibc's `major()`/`minor()` do.
    package static func split(_ device: UInt64) -> (major: UInt32, minor: UInt32) {
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
        let minor = (device & 0xff) | ((device >> 12) & ~UInt64(0xff))
        return (UInt32(truncatingIfNeeded: major), UInt32(truncatingIfNeeded: minor))
    }

    /// The node's device number (stat(2), following links) and sysfs
    /// directory; nil, with why, when `node` is not a character device or
    /// sysfs has no device with its number. Reads only that node and that
    /// one sysfs link: nothing is enumerated.
    package static func lookUp(_ node: String) -> Result<CharacterDeviceNode, NodeLookupError> {
        let info: Glibc.stat
        do { info = try Syscalls.stat(node) } catch {
            return .failure(NodeLookupError("\(node): \(error)"))
        }
        guard info.st_mode & S_IFMT == S_IFCHR else {
            return .failure(NodeLookupError("\(node) is not a character device node"))
        }
        let (major, minor) = split(UInt64(info.st_rdev))
        let link = "/sys/dev/char/\(major):\(minor)"
        guard let directory = try? Syscalls.realpath(link), directory.hasPrefix("/sys/devices/") else {
            return .failure(NodeLookupError("\(node): sysfs has no device \(major):\(minor) (\(link))"))
        }
        return .success(CharacterDeviceNode(node: node, major: major, minor: minor, directory: directory))
    }
}

/// Why one device node could not be resolved (`devif-usb rules names`).
package struct NodeLookupError: Error, Sendable, Equatable, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

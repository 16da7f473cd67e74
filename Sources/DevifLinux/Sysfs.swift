import DevifCore
import Glibc

/// Reading sysfs defensively: attribute files are small, but a device or a
/// driver chose some of their contents, so every read is capped.
public enum Sysfs {
    /// Reads at most `limit` bytes of a sysfs attribute or a regular file
    /// (sysfs attributes are one page at most; binary ones like
    /// `report_descriptor` up to 4 KiB). Not for procfs or pipes, where a
    /// short read does not mean the end.
    public static func read(_ path: String, limit: Int = 4096) throws(LinuxError) -> [UInt8] {
        let fd = try Syscalls.open(path, O_RDONLY)
        defer { Syscalls.close(fd) }
        return try readAll(fd, limit: limit, subject: path)
    }

    /// Reads an open file to its end, at most `limit` bytes.
    static func readAll(_ fd: Int32, limit: Int, subject: String) throws(LinuxError) -> [UInt8] {
        var result: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(limit, 4096)), alignment: 1)
        defer { chunk.deallocate() }
        while result.count < limit {
            let want = min(chunk.count, limit - result.count)
            let count = try Syscalls.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<want]), subject: subject)
            result += chunk[0..<count]
            // A short read is the end: a sysfs attribute comes whole in one
            // read, as a regular file's rest does (no second call to see 0).
            if count < want { break }
        }
        return result
    }

    /// Bytes as a text attribute: without its trailing newline, UTF-8 with
    /// invalid bytes replaced.
    static func text(_ bytes: [UInt8]) -> String {
        var bytes = bytes
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A text attribute without its trailing newline, UTF-8 with invalid
    /// bytes replaced; nil when the file does not exist or cannot be read.
    public static func string(_ path: String, limit: Int = 4096) -> String? {
        (try? read(path, limit: limit)).map(text)
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
        string(path, limit: 64).flatMap { Int($0.trimmingASCIIWhitespace()) }
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

    /// The canonical `/sys/devices/...` directory that a sysfs link names,
    /// with one readlink(2) for the links devif follows (`/sys/bus/B/devices/N`,
    /// `/sys/dev/char/M:N`, `/sys/class/C/N`, and a link such as `device` in
    /// a device directory named as the kernel names it, `/sys` + devpath):
    /// these sit in real directories and point at real ones, where
    /// realpath(3) reads every component (ten calls for a device on a hub).
    /// Anything else goes through realpath(3).
    /// Nil when the path cannot be resolved.
    package static func canonical(_ path: String) -> String? {
        if let folder = parent(of: path), isLinkFolder(folder), let target = try? Syscalls.readlink(path) {
            let resolved = normalized(target.hasPrefix("/") ? target : folder + "/" + target)
            if resolved.hasPrefix("/sys/devices/") { return resolved }
        }
        return try? Syscalls.realpath(path)
    }

    /// Whether `folder` is a real directory whose links point into
    /// /sys/devices: a link folder, or a device directory named canonically.
    static func isLinkFolder(_ folder: String) -> Bool {
        let parts = folder.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[0].isEmpty, parts[1] == "sys" else { return false }
        if parts[2] == "devices" { return !parts.dropFirst(3).contains { $0.isEmpty || $0 == "." || $0 == ".." } }
        switch (parts[2], parts.count) {
        case ("bus", 5): return parts[4] == "devices" && !parts[3].isEmpty && parts[3] != ".."
        case ("dev", 4): return parts[3] == "char" || parts[3] == "block"
        case ("class", 4): return !parts[3].isEmpty && parts[3] != ".." && parts[3] != "."
        default: return false
        }
    }

    /// An absolute path with `.`, `..` and empty components resolved
    /// lexically (`..` at the root stays at the root).
    static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
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

/// A sysfs device directory held open: a file read through it is found in
/// one step (not by walking `/sys/bus/usb/devices/1-1`, a link, and its
/// target's every component), and once the device is gone, or another has
/// taken its place, reads fail instead of reading the newcomer's files.
/// A class, not a noncopyable struct, so that a wait's condition may read
/// through it; the descriptor is closed with the last reference.
package final class SysfsDirectory: Sendable {
    private let fd: Int32
    /// The path it was opened by.
    package let path: String

    /// Opens `path` (following a link); nil when it is not a directory now.
    package init?(_ path: String) {
        guard let fd = try? Syscalls.open(path, O_RDONLY | O_DIRECTORY) else { return nil }
        self.fd = fd
        self.path = path
    }

    deinit { Syscalls.close(fd) }

    /// The file `name` (a name or a relative path), at most `limit` bytes.
    package func read(_ name: String, limit: Int = 4096) throws(LinuxError) -> [UInt8] {
        let file = try Syscalls.open(name, in: fd, O_RDONLY)
        defer { Syscalls.close(file) }
        return try Sysfs.readAll(file, limit: limit, subject: path + "/" + name)
    }

    /// A text attribute (see ``Sysfs/string(_:limit:)``); nil when unreadable.
    package func string(_ name: String, limit: Int = 4096) -> String? {
        (try? read(name, limit: limit)).map(Sysfs.text)
    }

    /// A decimal attribute; nil when absent, empty or not a number.
    package func decimal(_ name: String) -> Int? {
        string(name, limit: 64).flatMap { Int($0.trimmingASCIIWhitespace()) }
    }

    /// The directory's canonical path (`/sys/devices/...`), as the kernel
    /// names the open directory: one readlink, whatever link it was opened
    /// by. Nil once the directory is gone.
    package var canonicalPath: String? {
        guard let target = try? Syscalls.readlink("/proc/self/fd/\(fd)"), target.hasPrefix("/sys/"),
              !target.hasSuffix(" (deleted)") else { return nil }
        return target
    }

    /// Whether `name` exists in the directory (false once it is gone).
    package func exists(_ name: String) -> Bool { Syscalls.access(name, in: fd, F_OK) == nil }
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
    /// Whether `needle` (ASCII) occurs in the string's bytes.
    package func containsASCII(_ needle: StaticString) -> Bool {
        let n = UnsafeBufferPointer(start: needle.utf8Start, count: needle.utf8CodeUnitCount)
        guard let first = n.first else { return true }
        var copy = self
        return copy.withUTF8 { h in
            guard h.count >= n.count else { return false }
            for i in 0...(h.count - n.count) where h[i] == first {
                if (1..<n.count).allSatisfy({ h[i + $0] == n[$0] }) { return true }
            }
            return false
        }
    }

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
        guard let directory = Sysfs.canonical(link), directory.hasPrefix("/sys/devices/") else {
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

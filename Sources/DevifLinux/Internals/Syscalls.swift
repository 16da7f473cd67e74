// The one place that calls libc for the sources: each wrapper retries EINTR
// where that is right, and turns -1/errno into a LinuxError naming the call.
import Glibc

/// Thin typed wrappers over the system calls devif's sources use.
public enum Syscalls {
    /// `open(path, flags | O_CLOEXEC)`.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(LinuxError) -> Int32 {
        try retrying("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// `openat(directory, path, flags | O_CLOEXEC)`: `path` relative to an
    /// open directory.
    public static func open(_ path: String, in directory: Int32, _ flags: Int32) throws(LinuxError) -> Int32 {
        try retrying("openat", path) { Glibc.openat(directory, path, flags | O_CLOEXEC) }
    }

    /// `close(fd)`. Errors are not reported: after close the descriptor is
    /// gone either way on Linux, and retrying EINTR could close a reused one.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// `read(fd, buffer)`: the byte count (0 at end of file).
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer,
                            subject: String? = nil) throws(LinuxError) -> Int {
        try retrying("read", subject) { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// `write(fd, buffer)`: the byte count written.
    public static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer,
                             subject: String? = nil) throws(LinuxError) -> Int {
        try retrying("write", subject) { Glibc.write(fd, buffer.baseAddress, buffer.count) }
    }

    /// `poll(fds, timeout)`: how many descriptors have events; 0 on timeout.
    /// EINTR returns 0 (the caller re-checks its state and polls again).
    public static func poll(_ fds: inout [pollfd], timeoutMilliseconds: Int32) throws(LinuxError) -> Int {
        let rc = fds.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t($0.count), timeoutMilliseconds) }
        if rc < 0 {
            if errno == EINTR { return 0 }
            throw .current("poll")
        }
        return Int(rc)
    }

    /// `EFD_NONBLOCK` (`<sys/eventfd.h>` is not part of the Glibc module;
    /// the value is O_NONBLOCK's by definition).
    public static let eventfdNonBlocking = O_NONBLOCK
    /// `EFD_CLOEXEC` (O_CLOEXEC's value by definition).
    public static let eventfdCloseOnExec = O_CLOEXEC

    /// `eventfd(initial, flags | EFD_CLOEXEC)`.
    public static func eventfd(_ initial: UInt32, _ flags: Int32) throws(LinuxError) -> Int32 {
        guard let eventfdCall = libcEventfd else { throw LinuxError(code: ENOSYS, call: "eventfd") }
        return try retrying("eventfd") { eventfdCall(initial, flags | eventfdCloseOnExec) }
    }

    /// glibc's `eventfd`, looked up once: Swift's Glibc module does not
    /// import `<sys/eventfd.h>`, and `syscall()` is variadic (not callable
    /// from Swift), so the symbol is taken from the already loaded libc.
    private static let libcEventfd: (@convention(c) (UInt32, Int32) -> Int32)? = {
        guard let symbol = dlsym(nil, "eventfd") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UInt32, Int32) -> Int32).self)
    }()

    /// `socket(domain, type | SOCK_CLOEXEC, protocol)`.
    public static func socket(_ domain: Int32, _ type: Int32, _ proto: Int32,
                              subject: String? = nil) throws(LinuxError) -> Int32 {
        try retrying("socket", subject) { Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), proto) }
    }

    /// `bind(fd, address)`; `address` holds the raw socket address bytes.
    public static func bind(_ fd: Int32, address: [UInt8], subject: String? = nil) throws(LinuxError) {
        let rc = address.withUnsafeBytes {
            Glibc.bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
        }
        if rc < 0 { throw .current("bind", subject) }
    }

    /// `setsockopt(fd, level, name, &value)` for an `Int32` option.
    public static func setSocketOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32,
                                       subject: String? = nil) throws(LinuxError) {
        var value = value
        if setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) < 0 {
            throw .current("setsockopt", subject)
        }
    }

    /// `getsockopt(fd, level, name)` for an `Int32` option.
    public static func socketOption(_ fd: Int32, _ level: Int32, _ name: Int32,
                                    subject: String? = nil) throws(LinuxError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, level, name, &value, &length) < 0 { throw .current("getsockopt", subject) }
        return value
    }

    /// `connect(fd, address)`; `address` holds the raw socket address bytes.
    /// On a non-blocking socket EINPROGRESS is thrown like any error: the
    /// caller polls for writability and reads `SO_ERROR`.
    public static func connect(_ fd: Int32, address: [UInt8], subject: String? = nil) throws(LinuxError) {
        let rc = address.withUnsafeBytes {
            Glibc.connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
        }
        if rc < 0 { throw .current("connect", subject) }
    }

    /// `getaddrinfo(host, service)` for TCP streams: each address's family
    /// and raw bytes, in the resolver's order. Throws the resolver's message.
    public static func resolveTCP(host: String, service: String) throws(ResolveError) -> [(family: Int32, address: [UInt8])] {
        try resolve(host: host, service: service, flags: 0)
    }

    /// `getaddrinfo(host, service)` with `AI_PASSIVE`, for a listening TCP
    /// socket (nil host: every address): each address's family and bytes.
    public static func resolveListening(host: String?, service: String) throws(ResolveError) -> [(family: Int32, address: [UInt8])] {
        try resolve(host: host, service: service, flags: AI_PASSIVE)
    }

    private static func resolve(host: String?, service: String, flags: Int32) throws(ResolveError) -> [(family: Int32, address: [UInt8])] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        hints.ai_flags = flags
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, service, &hints, &list)
        guard rc == 0 else { throw ResolveError(host: host ?? "*", reason: String(cString: gai_strerror(rc))) }
        defer { freeaddrinfo(list) }
        var found: [(family: Int32, address: [UInt8])] = []
        var entry = list
        while let e = entry {
            if let a = e.pointee.ai_addr {
                found.append((e.pointee.ai_family, Array(UnsafeRawBufferPointer(start: a, count: Int(e.pointee.ai_addrlen)))))
            }
            entry = e.pointee.ai_next
        }
        return found
    }

    /// `listen(fd, backlog)`.
    public static func listen(_ fd: Int32, backlog: Int32, subject: String? = nil) throws(LinuxError) {
        if Glibc.listen(fd, backlog) < 0 { throw .current("listen", subject) }
    }

    /// `accept(fd)`, then close-on-exec (`accept4` is not in Swift's Glibc
    /// module): the connected socket.
    public static func accept(_ fd: Int32, subject: String? = nil) throws(LinuxError) -> Int32 {
        let connection = try retrying("accept", subject) { Glibc.accept(fd, nil, nil) }
        _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
        return connection
    }

    /// `fcntl(fd, F_SETFL)` setting or clearing `O_NONBLOCK`.
    public static func setNonBlocking(_ fd: Int32, _ on: Bool) throws(LinuxError) {
        let flags = fcntl(fd, F_GETFL)
        if flags < 0 { throw .current("fcntl") }
        if fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) < 0 { throw .current("fcntl") }
    }

    /// `recvfrom(fd, buffer, flags)`: the byte count (the datagram's full
    /// length with `MSG_TRUNC`) and the sender's raw address bytes.
    public static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, flags: Int32,
                               subject: String? = nil) throws(LinuxError) -> (count: Int, sender: [UInt8]) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let count = try withUnsafeMutablePointer(to: &storage) { pointer throws(LinuxError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(LinuxError) in
                try retrying("recvfrom", subject) { recvfrom(fd, buffer.baseAddress, buffer.count, flags, address, &length) }
            }
        }
        let sender = withUnsafeBytes(of: &storage) { Array($0.prefix(min(Int(length), $0.count))) }
        return (count, sender)
    }

    /// `faccessat(directory, path, mode)`: nil when allowed (or present, for F_OK).
    public static func access(_ path: String, in directory: Int32, _ mode: Int32) -> LinuxError? {
        Glibc.faccessat(directory, path, mode, 0) == 0 ? nil : .current("faccessat", path)
    }

    /// `access(path, mode)`: nil when allowed, else the error.
    public static func access(_ path: String, _ mode: Int32) -> LinuxError? {
        Glibc.access(path, mode) == 0 ? nil : .current("access", path)
    }

    /// `faccessat(path, mode, AT_EACCESS)`: as `access`, with the effective
    /// ids (those open() uses); nil when allowed.
    public static func effectiveAccess(_ path: String, _ mode: Int32) -> LinuxError? {
        faccessat(AT_FDCWD, path, mode, AT_EACCESS) == 0 ? nil : .current("faccessat", path)
    }

    /// The name of user `uid`, or nil when it has none.
    public static func userName(_ uid: uid_t) -> String? {
        var entry = passwd(), result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name
        else { return nil }
        return String(cString: name)
    }

    /// The name of group `gid`, or nil when it has none.
    public static func groupName(_ gid: gid_t) -> String? {
        var entry = group(), result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getgrgid_r(gid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.gr_name
        else { return nil }
        return String(cString: name)
    }

    /// `stat(path)` (follows symbolic links).
    public static func stat(_ path: String) throws(LinuxError) -> Glibc.stat {
        var result = Glibc.stat()
        if fstatat(AT_FDCWD, path, &result, 0) < 0 { throw .current("stat", path) }
        return result
    }

    /// `readlink(path)`: the link's target text (at most PATH_MAX bytes).
    public static func readlink(_ path: String) throws(LinuxError) -> String {
        let text = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Int(PATH_MAX)) { buffer -> String? in
            let count = buffer.withMemoryRebound(to: CChar.self) { Glibc.readlink(path, $0.baseAddress!, $0.count) }
            return count < 0 ? nil : String(decoding: buffer[0..<count], as: UTF8.self)
        }
        guard let text else { throw .current("readlink", path) }
        return text
    }

    /// `realpath(path)`: the canonical absolute path.
    public static func realpath(_ path: String) throws(LinuxError) -> String {
        guard let resolved = Glibc.realpath(path, nil) else { throw .current("realpath", path) }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Runs a call, retrying on EINTR; -1 becomes a LinuxError.
    private static func retrying<T: BinaryInteger>(_ call: String, _ subject: String? = nil,
                                                   _ body: () -> T) throws(LinuxError) -> T {
        while true {
            let rc = body()
            if rc >= 0 { return rc }
            if errno != EINTR { throw .current(call, subject) }
        }
    }
}

/// A host name that did not resolve: the resolver's own words.
public struct ResolveError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The name asked for.
    public var host: String
    /// `gai_strerror`'s text.
    public var reason: String
    /// `cannot resolve HOST: REASON`.
    public var description: String { "cannot resolve \(host): \(reason)" }
}

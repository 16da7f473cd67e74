import DevifCore
import Glibc

/// A TCP connection to a usbipd: connected within a deadline, read and
/// written in exact amounts within one, and (for an attach) set to notice a
/// dead network by itself, since the kernel's vhci-hcd, which takes the
/// socket over, has no keepalive of its own.
package struct TCPConnection: ~Copyable {
    /// The socket; closed by `deinit` unless taken.
    package let fd: Int32
    /// `host:port`, for messages.
    package let peer: String

    /// Connects to `host` (a name or an address) on `port`, trying each
    /// resolved address in turn, each within what is left of `timeout`.
    package init(host: String, port: String, timeout: Duration) throws(USBIPTransportError) {
        let peer = (host.contains(":") ? "[\(host)]" : host) + ":" + port
        let addresses: [(family: Int32, address: [UInt8])]
        do { addresses = try Syscalls.resolveTCP(host: host, service: port) } catch { throw .resolve(error) }
        let deadline = ContinuousClock.now + timeout
        var last: LinuxError?
        for candidate in addresses {
            let fd: Int32
            do { fd = try Syscalls.socket(candidate.family, Int32(SOCK_STREAM.rawValue), 0, subject: peer) } catch {
                last = error
                continue
            }
            do {
                try Self.connect(fd, candidate.address, peer: peer, deadline: deadline)
                try Syscalls.setSocketOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1, subject: peer)
                self.fd = fd
                self.peer = peer
                return
            } catch {
                Syscalls.close(fd)
                last = error
                if error.code == ETIMEDOUT { break }
            }
        }
        throw .connect(peer: peer, last ?? LinuxError(code: EADDRNOTAVAIL, call: "getaddrinfo", subject: peer))
    }

    /// Takes over an accepted connection's socket.
    package init(accepted fd: Int32, peer: String) {
        self.fd = fd
        self.peer = peer
    }

    deinit { Syscalls.close(fd) }

    private static func connect(_ fd: Int32, _ address: [UInt8], peer: String, deadline: ContinuousClock.Instant) throws(LinuxError) {
        try Syscalls.setNonBlocking(fd, true)
        do {
            try Syscalls.connect(fd, address: address, subject: peer)
        } catch where error.code == EINPROGRESS {
            try waitFor(Int16(POLLOUT), fd, peer: peer, call: "connect", deadline: deadline)
            let pending = try Syscalls.socketOption(fd, SOL_SOCKET, SO_ERROR, subject: peer)
            if pending != 0 { throw LinuxError(code: pending, call: "connect", subject: peer) }
        }
        // Blocking again: vhci-hcd's kernel threads use the socket as given.
        try Syscalls.setNonBlocking(fd, false)
    }

    private static func waitFor(_ events: Int16, _ fd: Int32, peer: String, call: String,
                                deadline: ContinuousClock.Instant) throws(LinuxError) {
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw LinuxError(code: ETIMEDOUT, call: call, subject: peer) }
            var fds = [pollfd(fd: fd, events: events, revents: 0)]
            if try Syscalls.poll(&fds, timeoutMilliseconds: Int32(clamping: left.millisecondsRoundedUp)) > 0 { return }
        }
    }

    /// Sends all of `bytes` before `deadline`.
    package func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws(USBIPTransportError) {
        var sent = 0
        do throws(LinuxError) {
            while sent < bytes.count {
                try Self.waitFor(Int16(POLLOUT), fd, peer: peer, call: "send", deadline: deadline)
                // Array's closures rethrow untyped: the typed error rides a Result.
                sent += try bytes.withUnsafeBytes { raw in
                    Result { () throws(LinuxError) in try Syscalls.write(fd, UnsafeRawBufferPointer(rebasing: raw[sent...]), subject: peer) }
                }.get()
            }
        } catch { throw .io(peer: peer, error) }
    }

    /// Receives exactly `count` bytes before `deadline`; the peer closing
    /// first is an error (usbipd closes after a refusal or a bad request).
    package func receive(exactly count: Int, deadline: ContinuousClock.Instant) throws(USBIPTransportError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n: Int
            do throws(LinuxError) {
                try Self.waitFor(Int16(POLLIN), fd, peer: peer, call: "recv", deadline: deadline)
                n = try bytes.withUnsafeMutableBytes { raw in
                    Result { () throws(LinuxError) in
                        try Syscalls.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[got...]), subject: peer)
                    }
                }.get()
            } catch { throw .io(peer: peer, error) }
            if n == 0 { throw .closed(peer: peer, after: got, wanted: count) }
            got += n
        }
        return bytes
    }

    /// Sets the socket to end itself when the peer stops answering: TCP
    /// keepalive probes from `idle` of silence, every `interval`, and a user
    /// timeout of `timeout` for unacknowledged data and unanswered probes
    /// alike. A lost network then ends the connection, and vhci-hcd
    /// removes the device, within about `timeout`.
    package func endWhenSilent(for timeout: Duration) throws(USBIPTransportError) {
        let seconds = max(2, Int32(clamping: timeout.milliseconds / 1000))
        let idle = max(1, seconds / 4)
        do throws(LinuxError) {
            try Syscalls.setSocketOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1, subject: peer)
            try Syscalls.setSocketOption(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, idle, subject: peer)
            try Syscalls.setSocketOption(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, 1, subject: peer)
            try Syscalls.setSocketOption(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, max(1, seconds - idle), subject: peer)
            try Syscalls.setSocketOption(fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT,
                                         Int32(clamping: timeout.milliseconds), subject: peer)
        } catch { throw .io(peer: peer, error) }
    }
}

/// What went wrong between this host and a usbipd, below the protocol.
package enum USBIPTransportError: Error, Sendable, CustomStringConvertible {
    case resolve(ResolveError)
    case connect(peer: String, LinuxError)
    case io(peer: String, LinuxError)
    case closed(peer: String, after: Int, wanted: Int)

    package var description: String {
        switch self {
        case .resolve(let e): "\(e)"
        case .connect(let peer, let e) where e.code == ECONNREFUSED:
            "\(peer) refused the connection: is usbipd running there (`usbipd -D`, or `usbipd --device -D` for gadgets) and is the port open? (\(e))"
        case .connect(let peer, let e) where e.code == ETIMEDOUT:
            "\(peer) did not answer in time: check the address, the network and any firewall in between (\(e))"
        case .connect(let peer, let e): "cannot connect to \(peer): \(e)"
        case .io(let peer, let e) where e.code == ETIMEDOUT: "\(peer) stopped answering (\(e))"
        case .io(let peer, let e): "talking to \(peer): \(e)"
        case .closed(let peer, let after, let wanted):
            "\(peer) closed the connection after \(after) of \(wanted) bytes of its reply (it refused the request or is not a usbipd)"
        }
    }
}

/// A listening TCP socket whose `accept` a stop wakes: a server's one loop.
package struct TCPListener: ~Copyable, Sendable {
    private let fd: Int32
    private let wake: EventFD
    /// `address:port`, for messages.
    package let name: String

    /// Listens on `address` (nil: every address) and `port`.
    package init(address: String?, port: String) throws(USBIPTransportError) {
        let name = (address.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "*") + ":" + port
        let candidates: [(family: Int32, address: [UInt8])]
        do { candidates = try Syscalls.resolveListening(host: address, service: port) } catch { throw .resolve(error) }
        // Without an address, IPv6's wildcard (which takes IPv4 too) first.
        let ordered = candidates.sorted { a, _ in a.family == AF_INET6 }
        var last = LinuxError(code: EADDRNOTAVAIL, call: "getaddrinfo", subject: name)
        for c in ordered {
            do throws(LinuxError) {
                let fd = try Syscalls.socket(c.family, Int32(SOCK_STREAM.rawValue), 0, subject: name)
                do throws(LinuxError) {
                    try Syscalls.setSocketOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, subject: name)
                    try Syscalls.bind(fd, address: c.address, subject: name)
                    try Syscalls.listen(fd, backlog: 16, subject: name)
                    self.wake = try EventFD()
                } catch {
                    Syscalls.close(fd)
                    throw error
                }
                self.fd = fd
                self.name = name
                return
            } catch { last = error }
        }
        throw .connect(peer: name, last)
    }

    deinit { Syscalls.close(fd) }

    /// The next connection; nil once ``stop()`` was called.
    package func accept() throws(USBIPTransportError) -> TCPConnection? {
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            do { _ = try Syscalls.poll(&fds, timeoutMilliseconds: -1) } catch { throw .io(peer: name, error) }
            if fds[1].revents != 0 { return nil }
            guard fds[0].revents != 0 else { continue }
            do {
                let connection = try Syscalls.accept(fd, subject: name)
                return TCPConnection(accepted: connection, peer: Self.peerName(connection))
            } catch where [ECONNABORTED, EAGAIN, EINTR].contains(error.code) {
                continue
            } catch { throw .io(peer: name, error) }
        }
    }

    /// Wakes ``accept()`` for good. Safe from any thread.
    package func stop() { wake.signal() }

    private static func peerName(_ fd: Int32) -> String {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
        }
        guard ok else { return "a client" }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST)), service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard rc == 0 else { return "a client" }
        // Both NUL-terminated within their arrays (getnameinfo succeeded).
        func text(_ chars: [CChar]) -> String {
            String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let h = text(host)
        return (h.contains(":") ? "[\(h)]" : h) + ":" + text(service)
    }
}

import DevifCore
import DevifUSB
import Synchronization

/// An open USB instance: bulk, interrupt and control transfers (sync and
/// async), streams, interface claiming. Get one with
/// ``DeviceManager/openUSB(_:)-(String)``.
///
/// A handle is a slot and generation in the manager's handle table: a copy
/// kept after ``close()`` fails cleanly with ``/DevifCore/HandleError/closed``. When the
/// device leaves, I/O in progress ends with ``/DevifCore/HandleError/deviceRemoved``
/// (within milliseconds), later calls fail fast with it, and
/// ``removalNotices()`` says `.pending` then `.complete`. Bulk and interrupt
/// transfers claim the endpoint's interface on first use (detaching a kernel
/// driver, given back on close); an interface instance's interface is
/// claimed at open.
public struct USBHandle: Sendable, CustomStringConvertible {
    /// The symbolic link this handle was opened with.
    public var symbolicLink: SymbolicLink { ref.instance.symbolicLink }
    /// The handle's slot and generation in the manager's table.
    public var handle: Handle { ref.handle }
    /// The interface of an interface instance (`mi_NN` in the link); nil for a device instance.
    public let interfaceNumber: Int?

    let ref: HandleRef
    let device: USBDevice

    init(ref: HandleRef, device: USBDevice, interfaceNumber: Int?) {
        self.ref = ref
        self.device = device
        self.interfaceNumber = interfaceNumber
    }

    public var description: String { "USB handle \(handle) to \(symbolicLink)" }

    /// An endpoint of the active configuration: its address (number and
    /// direction), transfer type, packet size and interface.
    public struct Endpoint: Sendable, Hashable {
        /// The endpoint's address (`bEndpointAddress`).
        public let address: EndpointAddress
        /// Bulk, interrupt, isochronous or control.
        public let kind: USBEndpoint.TransferType
        /// `wMaxPacketSize` (bits 0-10: bytes per packet).
        public let maxPacketSize: Int
        /// The interface (number) the endpoint belongs to; claimed on first use.
        public let interface: Int
        /// Whether data flows from the device to the host.
        public var isIn: Bool { address.isIn }
    }

    /// The thread on which USB transfers complete, as a task executor: a
    /// task that prefers it runs there between two rounds of libusb's
    /// events, and each completion that resumes it costs no thread wake-up.
    /// The faster way to read an ``InStream`` as an AsyncSequence (the push
    /// reader, ``startReading(endpoint:transferSize:transfers:timeout:_:)``, is faster still):
    ///
    /// ```swift
    /// let reading = Task(executorPreference: USBHandle.completionExecutor) {
    ///     for try await chunk in stream { consume(chunk) }
    /// }
    /// ```
    ///
    /// What runs there holds up every transfer of the process while it
    /// runs, as a push reader's handler does: keep it short, never block
    /// (a synchronous transfer from it fails with
    /// ``/DevifCore/HandleError/busy``: use the async form), and hand slow work to
    /// another task. One executor per process; before the first handle is
    /// opened its jobs run on Swift's global executor.
    public static var completionExecutor: some TaskExecutor { EventThreadExecutor.shared }

    /// What a push-mode reader's handler returns.
    public enum ReadAction: Sendable {
        /// Resubmit the transfer and go on reading.
        case `continue`
        /// Stop the reader (its transfers are cancelled; `wait()` returns nil).
        case stop
    }
    /// A push-mode reader's handler: each transfer's bytes, valid during the call.
    public typealias ReadHandler = @Sendable (UnsafeRawBufferPointer) -> ReadAction

    /// Endpoints of the active configuration (every alternate setting), by address.
    public var endpoints: [Endpoint] {
        device.endpoints.map {
            Endpoint(address: EndpointAddress(rawValue: $0.address), kind: $0.kind, maxPacketSize: $0.maxPacketSize,
                     interface: $0.interface)
        }
    }

    /// Closes the handle: I/O in progress ends with ``/DevifCore/HandleError/closed``,
    /// claimed interfaces go back to their kernel drivers. Returns false if
    /// it was closed already. Safe from any thread or task, twice, with I/O pending.
    @discardableResult
    public func close() -> Bool { ref.close() }

    /// `.pending` then `.complete` when the device goes away (see ``RemovalNotice``);
    /// the stream ends after `.complete` or when the handle is closed.
    public func removalNotices() -> AsyncStream<RemovalNotice> { ref.instance.tracker.notices() }

    // MARK: Transfers

    /// Sends `data` on an OUT endpoint (bulk or interrupt, as the endpoint is),
    /// blocking the calling thread; returns the bytes sent. `zeroLengthPacket`:
    /// end with a zero-length packet when the length is a multiple of the
    /// packet size. `timeout` nil: no limit.
    @discardableResult
    public func write(endpoint: EndpointAddress, _ data: [UInt8], timeout: Duration? = .seconds(5),
                      zeroLengthPacket: Bool = false) throws(HandleError) -> Int {
        try ref.perform { () throws(USBError) in
            try device.write(endpoint: endpoint.rawValue, data, timeout: timeout, zeroLengthPacket: zeroLengthPacket)
        }
    }

    /// Receives at most `length` bytes from an IN endpoint (bulk or
    /// interrupt), blocking the calling thread. `timeout` nil: no limit.
    public func read(endpoint: EndpointAddress, length: Int, timeout: Duration? = .seconds(5)) throws(HandleError) -> [UInt8] {
        try ref.perform { () throws(USBError) in try device.read(endpoint: endpoint.rawValue, length: length, timeout: timeout) }
    }

    /// Sends the bytes of `buffer` (the caller's memory) on an OUT endpoint,
    /// blocking the calling thread; returns the bytes sent. Once the
    /// endpoint has been used at this size, a call allocates nothing.
    @discardableResult
    public func write(endpoint: EndpointAddress, from buffer: UnsafeRawBufferPointer, timeout: Duration? = .seconds(5),
                      zeroLengthPacket: Bool = false) throws(HandleError) -> Int {
        try ref.perform { () throws(USBError) in
            try device.write(endpoint: endpoint.rawValue, from: buffer, timeout: timeout, zeroLengthPacket: zeroLengthPacket)
        }
    }

    /// Receives at most `buffer.count` bytes from an IN endpoint into the
    /// caller's memory, blocking the calling thread; returns how many came.
    /// Once the endpoint has been used at this size, a call allocates nothing.
    public func read(endpoint: EndpointAddress, into buffer: UnsafeMutableRawBufferPointer,
                     timeout: Duration? = .seconds(5)) throws(HandleError) -> Int {
        try ref.perform { () throws(USBError) in try device.read(endpoint: endpoint.rawValue, into: buffer, timeout: timeout) }
    }

    /// The async form of the blocking `write`: sends `data` on an OUT endpoint
    /// and returns the bytes sent; cancelling the task cancels the transfer
    /// (``/DevifCore/HandleError/cancelled``).
    @discardableResult
    public func write(endpoint: EndpointAddress, _ data: [UInt8], timeout: Duration? = .seconds(5),
                      zeroLengthPacket: Bool = false) async throws(HandleError) -> Int {
        try await ref.performAsync { () async throws(USBError) in
            try await device.write(endpoint: endpoint.rawValue, data, timeout: timeout, zeroLengthPacket: zeroLengthPacket)
        }
    }

    /// The async form of the blocking `read`: at most `length` bytes from an IN
    /// endpoint; cancelling the task cancels the transfer (``/DevifCore/HandleError/cancelled``).
    public func read(endpoint: EndpointAddress, length: Int, timeout: Duration? = .seconds(5)) async throws(HandleError) -> [UInt8] {
        try await ref.performAsync { () async throws(USBError) in
            try await device.read(endpoint: endpoint.rawValue, length: length, timeout: timeout)
        }
    }

    /// Reads an IN endpoint continuously with `transfers` transfers in flight.
    /// Dropping every copy of the stream stops it (see `USBInStream` in DevifUSB).
    public func inStream(endpoint: EndpointAddress, transferSize: Int = 16384, transfers: Int = 8,
                         timeout: Duration? = nil) throws(HandleError) -> InStream {
        let stream = try ref.perform { () throws(USBError) in
            try device.inStream(endpoint: endpoint.rawValue, transferSize: transferSize, transfers: transfers, timeout: timeout)
        }
        return InStream(ref: ref, stream: stream)
    }

    /// A running ``inStream(endpoint:transferSize:transfers:timeout:)``.
    public struct InStream: Sendable {
        let ref: HandleRef
        let stream: USBInStream
        /// Bytes taken so far.
        public var bytesReceived: UInt64 { stream.bytesReceived }
        /// The next chunk; nil after ``stop()``. See `USBInStream.next(timeout:)` in DevifUSB.
        public func next(timeout: Duration?) throws(HandleError) -> [UInt8]? {
            try ref.perform { () throws(USBError) in try stream.next(timeout: timeout) }
        }
        /// The async form of ``next(timeout:)``: the next chunk, or nil after ``stop()``.
        public func next() async throws(HandleError) -> [UInt8]? {
            try await ref.performAsync { () async throws(USBError) in try await stream.next() }
        }
        /// Stops the stream: ``next()`` then returns nil; `wait()` tells
        /// when every transfer is back.
        public func stop() { stream.stop() }
        #if DEBUG
        /// Lab tests only: see `USBInStream`'s hook of the same name.
        @_spi(LabHooks) public var beforeSubmit: CallbackSlot<Void> { stream.beforeSubmit }
        #endif
        /// Blocks until the stream has ended and every transfer is back (the
        /// endpoint is then free for another stream or read); nil when it
        /// was stopped, else why it ended. See `USBInStream.wait()` in DevifUSB.
        @discardableResult
        public func wait() -> HandleError? { stream.wait().map { HandleError($0, link: ref.instance.link) } }
        /// The async form of the blocking `wait()`: suspends instead of
        /// blocking the thread (one name for both, as `next`).
        @discardableResult
        public func wait() async -> HandleError? {
            await stream.wait().map { HandleError($0, link: ref.instance.link) }
        }

        /// The former name of the async `wait()`.
        @available(*, deprecated, renamed: "wait()", message: "await wait(): the async form has the blocking form's name")
        @discardableResult
        public func finished() async -> HandleError? { await wait() }
    }

    /// Writes an OUT endpoint continuously with `transfers` transfers of
    /// `transferSize` bytes (a multiple of the packet size) queued: the
    /// device always has the next buffer waiting. Writes block (or suspend)
    /// only while every transfer is in flight; ``OutStream/finish(timeout:)``
    /// sends the rest, ends with a zero-length packet when the data ends on
    /// a packet boundary (`zeroLengthPacket`), and waits for the device.
    /// `timeout`: for each transfer (nil: none).
    public func outStream(endpoint: EndpointAddress, transferSize: Int = 16384, transfers: Int = 8,
                          timeout: Duration? = nil, zeroLengthPacket: Bool = true) throws(HandleError) -> OutStream {
        let stream = try ref.perform { () throws(USBError) in
            try device.outStream(endpoint: endpoint.rawValue, transferSize: transferSize, transfers: transfers,
                                 timeout: timeout, zeroLengthPacket: zeroLengthPacket)
        }
        return OutStream(ref: ref, stream: stream)
    }

    /// A running ``outStream(endpoint:transferSize:transfers:timeout:zeroLengthPacket:)``.
    /// One writer at a time. Dropping every copy cancels what is in flight.
    public struct OutStream: Sendable {
        let ref: HandleRef
        let stream: USBOutStream
        /// Bytes the device has taken so far.
        public var bytesSent: UInt64 { stream.bytesSent }
        /// Queues `buffer`'s bytes (copied), blocking while every transfer is in flight.
        /// - Throws: what ended the stream (``/DevifCore/HandleError/deviceRemoved``,
        ///   ``/DevifCore/HandleError/closed``, a stall ...).
        public func write(from buffer: UnsafeRawBufferPointer) throws(HandleError) {
            try ref.perform { () throws(USBError) in try stream.write(from: buffer) }
        }
        /// Queues `count` bytes that `fill` writes straight into the
        /// transfers' buffers, with no copy in between: it is called with
        /// consecutive regions and each region's offset in the `count`
        /// bytes, and must fill each region whole (do not block there).
        /// Blocks while every transfer is in flight.
        public func write(count: Int, filling fill: (UnsafeMutableRawBufferPointer, _ offset: Int) -> Void) throws(HandleError) {
            try ref.perform { () throws(USBError) in try stream.write(count: count, filling: fill) }
        }
        /// Queues `bytes`, blocking while every transfer is in flight.
        public func write(_ bytes: [UInt8]) throws(HandleError) {
            try ref.perform { () throws(USBError) in
                try bytes.withUnsafeBytes { b in Result { () throws(USBError) in try stream.write(from: b) } }.get()
            }
        }
        /// The async form of ``write(_:)-(_)``: suspends while every transfer is in flight.
        public func write(_ bytes: [UInt8]) async throws(HandleError) {
            try await ref.performAsync { () async throws(USBError) in try await stream.write(bytes) }
        }
        /// The async form of ``write(count:filling:)``: suspends while every
        /// transfer is in flight.
        public func write(count: Int, filling fill: (UnsafeMutableRawBufferPointer, _ offset: Int) -> Void) async throws(HandleError) {
            try await ref.performAsync { () async throws(USBError) in try await stream.write(count: count, filling: fill) }
        }
        /// Sends what is gathered (and the zero-length packet the rule asks
        /// for), waits for every transfer (each at most `timeout`), and
        /// returns the bytes the device took. Later writes fail.
        @discardableResult
        public func finish(timeout: Duration? = .seconds(5)) throws(HandleError) -> UInt64 {
            try ref.perform { () throws(USBError) in try stream.finish(timeout: timeout) }
        }
        /// The async form of ``finish(timeout:)``; cancel the task to give up.
        @discardableResult
        public func finish() async throws(HandleError) -> UInt64 {
            try await ref.performAsync { () async throws(USBError) in try await stream.finish() }
        }
        /// Cancels what is in flight (it may or may not have reached the device).
        public func cancel() { stream.cancel() }
    }

    /// Reads an IN endpoint in push mode, the fastest way to stream: `handler`
    /// gets each transfer's bytes on devif's event thread as it completes
    /// (valid only during the call; do not block there) and returns
    /// `.continue` or `.stop`; the transfer is resubmitted at once. See
    /// `USBReader` in DevifUSB.
    public func startReading(endpoint: EndpointAddress, transferSize: Int = 16384, transfers: Int = 8,
                             timeout: Duration? = nil,
                             _ handler: @escaping ReadHandler) throws(HandleError) -> Reader {
        // A running reader counts as a call in progress for removal notices
        // (`.complete` comes once it has ended).
        ref.instance.tracker.begin()
        do {
            let reader = try ref.perform { () throws(USBError) in
                try device.startReading(endpoint: endpoint.rawValue, transferSize: transferSize, transfers: transfers,
                                        timeout: timeout) { handler($0) == .continue ? .continue : .stop }
            }
            return Reader(ref: ref, reader: reader)
        } catch {
            ref.instance.tracker.end()
            throw error
        }
    }

    /// A running ``startReading(endpoint:transferSize:transfers:timeout:_:)``.
    public final class Reader: Sendable {
        let ref: HandleRef
        let reader: USBReader
        private let ended = Mutex<HandleError??>(nil)

        init(ref: HandleRef, reader: USBReader) {
            self.ref = ref
            self.reader = reader
            // Settle when the reader ends, waited for or not: the removal
            // notices' `.complete` must not depend on the holder calling wait().
            Task.detached { [self] in _ = await wait() }
        }

        /// Bytes handed to the handler so far.
        public var bytesReceived: UInt64 { reader.bytesReceived }
        /// Stops reading; `wait()` returns once the transfers are back.
        public func stop() { reader.stop() }
        #if DEBUG
        /// Lab tests only: see `USBReader`'s hook of the same name.
        @_spi(LabHooks) public var beforeResubmit: CallbackSlot<Void> { reader.beforeResubmit }
        #endif

        /// Blocks until the reader has ended; nil when it was stopped (by
        /// ``stop()`` or the handler), else why it ended
        /// (``/DevifCore/HandleError/deviceRemoved``, ``/DevifCore/HandleError/closed``, a stall ...).
        @discardableResult
        public func wait() -> HandleError? { settle(reader.wait()) }

        /// The async form of the blocking `wait()`: suspends instead of
        /// blocking the thread.
        @discardableResult
        public func wait() async -> HandleError? { settle(await reader.wait()) }

        /// The former name of the async `wait()`.
        @available(*, deprecated, renamed: "wait()", message: "await wait(): the async form has the blocking form's name")
        @discardableResult
        public func finished() async -> HandleError? { await wait() }

        private func settle(_ end: USBError?) -> HandleError? {
            let (first, error) = ended.withLock { e -> (Bool, HandleError?) in
                if let known = e { return (false, known) }
                let mapped = end.map { HandleError($0, link: ref.instance.link) }
                e = .some(mapped)
                return (true, mapped)
            }
            if first {
                if error == .deviceRemoved { ref.markRemoved() }
                ref.instance.tracker.end()
            }
            return error
        }
    }

    // MARK: Control

    /// A control transfer with an IN data stage of at most `length` bytes
    /// (0...65535), blocking the calling thread; returns the bytes received.
    /// The direction comes from the call: `request` has none.
    public func controlIn(_ request: ControlRequest, length: Int,
                          timeout: Duration? = .seconds(5)) throws(HandleError) -> [UInt8] {
        try ref.perform { () throws(USBError) in
            try device.controlIn(requestType: request.requestType(in: true), request: request.request,
                                 value: request.value, index: request.index, length: length, timeout: timeout)
        }
    }

    /// A control transfer with an OUT data stage (`data`, or none), blocking
    /// the calling thread; returns the bytes sent.
    @discardableResult
    public func controlOut(_ request: ControlRequest, data: [UInt8] = [],
                           timeout: Duration? = .seconds(5)) throws(HandleError) -> Int {
        try ref.perform { () throws(USBError) in
            try device.controlOut(requestType: request.requestType(in: false), request: request.request,
                                  value: request.value, index: request.index, data: data, timeout: timeout)
        }
    }

    /// A control transfer with an IN data stage of at most `buffer.count`
    /// bytes, into the caller's memory, blocking the calling thread; returns
    /// how many came. Once the control pipe has been used at this size, a
    /// call allocates nothing.
    public func controlIn(_ request: ControlRequest, into buffer: UnsafeMutableRawBufferPointer,
                          timeout: Duration? = .seconds(5)) throws(HandleError) -> Int {
        try ref.perform { () throws(USBError) in
            try device.controlIn(requestType: request.requestType(in: true), request: request.request,
                                 value: request.value, index: request.index, into: buffer, timeout: timeout)
        }
    }

    /// A control transfer with an OUT data stage from the caller's memory,
    /// blocking the calling thread; returns the bytes sent. Once the control
    /// pipe has been used at this size, a call allocates nothing.
    @discardableResult
    public func controlOut(_ request: ControlRequest, from buffer: UnsafeRawBufferPointer,
                           timeout: Duration? = .seconds(5)) throws(HandleError) -> Int {
        try ref.perform { () throws(USBError) in
            try device.controlOut(requestType: request.requestType(in: false), request: request.request,
                                  value: request.value, index: request.index, from: buffer, timeout: timeout)
        }
    }

    /// The async form of the blocking `controlIn`; cancelling the task cancels
    /// the transfer (``/DevifCore/HandleError/cancelled``).
    public func controlIn(_ request: ControlRequest, length: Int,
                          timeout: Duration? = .seconds(5)) async throws(HandleError) -> [UInt8] {
        try await ref.performAsync { () async throws(USBError) in
            try await device.controlIn(requestType: request.requestType(in: true), request: request.request,
                                       value: request.value, index: request.index, length: length, timeout: timeout)
        }
    }

    /// The async form of the blocking `controlOut`; cancelling the task
    /// cancels the transfer (``/DevifCore/HandleError/cancelled``).
    @discardableResult
    public func controlOut(_ request: ControlRequest, data: [UInt8] = [],
                           timeout: Duration? = .seconds(5)) async throws(HandleError) -> Int {
        try await ref.performAsync { () async throws(USBError) in
            try await device.controlOut(requestType: request.requestType(in: false), request: request.request,
                                        value: request.value, index: request.index, data: data, timeout: timeout)
        }
    }

    // MARK: Interfaces and endpoints

    /// Claims interface `number` (a bound kernel driver is detached, and given
    /// back on release or close). Claiming twice is harmless.
    public func claim(interface number: Int) throws(HandleError) {
        try ref.perform { () throws(USBError) in try device.claim(interface: number) }
    }

    /// Releases a claimed interface, giving it back to its kernel driver, if any.
    public func release(interface number: Int) throws(HandleError) {
        try ref.perform { () throws(USBError) in try device.release(interface: number) }
    }

    /// Selects alternate setting `setting` of claimed interface `number`.
    public func setAlternateSetting(_ setting: Int, interface number: Int) throws(HandleError) {
        try ref.perform { () throws(USBError) in try device.setAlternateSetting(setting, interface: number) }
    }

    /// Clears a halt (stall) on an endpoint.
    public func clearHalt(endpoint: EndpointAddress) throws(HandleError) {
        try ref.perform { () throws(USBError) in try device.clearHalt(endpoint: endpoint.rawValue) }
    }
}

/// An IN stream is an `AsyncSequence` of ``USBHandle/InStream/Chunk``s:
/// `for try await chunk in stream` reads until ``USBHandle/InStream/stop()``
/// (the loop ends) or an error (thrown: ``/DevifCore/HandleError/deviceRemoved``,
/// ``/DevifCore/HandleError/closed`` ...). Each chunk lends the transfer's own
/// buffer (no copy); the buffer goes back to the stream when the chunk is
/// released, so keep a chunk only as long as you need it (`Array(chunk)`
/// copies it out).
extension USBHandle.InStream: AsyncSequence {
    public typealias Element = Chunk
    public typealias Failure = HandleError

    /// Bytes from one transfer, lent from its buffer (a collection of
    /// `UInt8`; ``withUnsafeBytes(_:)`` for the memory itself).
    public struct Chunk: RandomAccessCollection, Sendable {
        let storage: USBInChunk
        public var startIndex: Int { 0 }
        public var endIndex: Int { storage.count }
        public subscript(position: Int) -> UInt8 {
            precondition(position >= 0 && position < storage.count, "chunk index out of range")
            return storage.bytes[position]
        }
        /// Calls `body` with the chunk's bytes (valid during the call).
        public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
            try body(storage.bytes)
        }
    }

    /// Takes chunks from the stream in order; see ``USBHandle/InStream``.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let stream: USBHandle.InStream
        /// The next chunk; nil after ``USBHandle/InStream/stop()``.
        public mutating func next() async throws(HandleError) -> Chunk? { try await Self.take(stream) }
        /// The next chunk; nil after ``USBHandle/InStream/stop()``.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(HandleError) -> Chunk? {
            try await Self.take(stream)
        }
        private static func take(_ stream: USBHandle.InStream) async throws(HandleError) -> Chunk? {
            try await stream.ref.performAsync { () async throws(USBError) in
                try await stream.stream.nextChunk().map { Chunk(storage: $0) }
            }
        }
    }

    /// An iterator over the stream's chunks.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: self) }
}

import DevifCore
import DevifUSB

/// An open USB instance: bulk, interrupt and control transfers (sync and
/// async), streams, interface claiming. Get one with
/// ``DeviceManager/openUSB(_:)``.
///
/// A handle is a slot and generation in the manager's handle table: a copy
/// kept after ``close()`` fails cleanly with ``HandleError/closed``. When the
/// device leaves, I/O in progress ends with ``HandleError/deviceRemoved``
/// (within milliseconds), later calls fail fast with it, and
/// ``removalNotices()`` says `.pending` then `.complete`. Bulk and interrupt
/// transfers claim the endpoint's interface on first use (detaching a kernel
/// driver, given back on close); an interface instance's interface is
/// claimed at open.
public struct USBHandle: Sendable, CustomStringConvertible {
    /// The symbolic link this handle was opened with.
    public var symbolicLink: String { ref.instance.link }
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

    /// Endpoints of the active configuration.
    public var endpoints: [USBDevice.Endpoint] { device.endpoints }

    /// Closes the handle: I/O in progress ends with ``HandleError/closed``,
    /// claimed interfaces go back to their kernel drivers. Returns false if
    /// it was closed already. Safe from any thread or task, twice, with I/O pending.
    @discardableResult
    public func close() -> Bool { ref.close() }

    /// `.pending` then `.complete` when the device goes away (see ``RemovalNotice``);
    /// the stream ends after `.complete` or when the handle is closed.
    public func removalNotices() -> AsyncStream<RemovalNotice> { ref.instance.tracker.notices() }

    // MARK: Transfers

    @discardableResult
    public func write(endpoint: UInt8, _ data: [UInt8], timeout: Duration? = .seconds(5),
                      zeroLengthPacket: Bool = false) throws(HandleError) -> Int {
        try ref.perform { () throws(USBError) in
            try device.write(endpoint: endpoint, data, timeout: timeout, zeroLengthPacket: zeroLengthPacket)
        }
    }

    public func read(endpoint: UInt8, length: Int, timeout: Duration? = .seconds(5)) throws(HandleError) -> [UInt8] {
        try ref.perform { () throws(USBError) in try device.read(endpoint: endpoint, length: length, timeout: timeout) }
    }

    @discardableResult
    public func write(endpoint: UInt8, _ data: [UInt8], timeout: Duration? = .seconds(5),
                      zeroLengthPacket: Bool = false) async throws(HandleError) -> Int {
        try await ref.performAsync { () async throws(USBError) in
            try await device.write(endpoint: endpoint, data, timeout: timeout, zeroLengthPacket: zeroLengthPacket)
        }
    }

    public func read(endpoint: UInt8, length: Int, timeout: Duration? = .seconds(5)) async throws(HandleError) -> [UInt8] {
        try await ref.performAsync { () async throws(USBError) in
            try await device.read(endpoint: endpoint, length: length, timeout: timeout)
        }
    }

    /// Reads an IN endpoint continuously with `transfers` transfers in flight.
    public func inStream(endpoint: UInt8, transferSize: Int = 16384, transfers: Int = 8,
                         timeout: Duration? = nil) throws(HandleError) -> InStream {
        let stream = try ref.perform { () throws(USBError) in
            try device.inStream(endpoint: endpoint, transferSize: transferSize, transfers: transfers, timeout: timeout)
        }
        return InStream(ref: ref, stream: stream)
    }

    /// A running ``inStream(endpoint:transferSize:transfers:timeout:)``.
    public struct InStream: Sendable {
        let ref: HandleRef
        let stream: USBInStream
        /// Bytes taken so far.
        public var bytesReceived: UInt64 { stream.bytesReceived }
        /// The next chunk; nil after ``stop()``. See ``USBInStream/next(timeout:)``.
        public func next(timeout: Duration?) throws(HandleError) -> [UInt8]? {
            try ref.perform { () throws(USBError) in try stream.next(timeout: timeout) }
        }
        public func next() async throws(HandleError) -> [UInt8]? {
            try await ref.performAsync { () async throws(USBError) in try await stream.next() }
        }
        public func stop() { stream.stop() }
    }

    // MARK: Control

    public func controlIn(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, length: Int,
                          timeout: Duration? = .seconds(5)) throws(HandleError) -> [UInt8] {
        try ref.perform { () throws(USBError) in
            try device.controlIn(requestType: requestType, request: request, value: value, index: index,
                                 length: length, timeout: timeout)
        }
    }

    @discardableResult
    public func controlOut(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, data: [UInt8] = [],
                           timeout: Duration? = .seconds(5)) throws(HandleError) -> Int {
        try ref.perform { () throws(USBError) in
            try device.controlOut(requestType: requestType, request: request, value: value, index: index,
                                  data: data, timeout: timeout)
        }
    }

    public func controlIn(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, length: Int,
                          timeout: Duration? = .seconds(5)) async throws(HandleError) -> [UInt8] {
        try await ref.performAsync { () async throws(USBError) in
            try await device.controlIn(requestType: requestType, request: request, value: value, index: index,
                                       length: length, timeout: timeout)
        }
    }

    // MARK: Interfaces and endpoints

    public func claim(interface number: Int) throws(HandleError) {
        try ref.perform { () throws(USBError) in try device.claim(interface: number) }
    }

    public func release(interface number: Int) throws(HandleError) {
        try ref.perform { () throws(USBError) in try device.release(interface: number) }
    }

    public func setAlternateSetting(_ setting: Int, interface number: Int) throws(HandleError) {
        try ref.perform { () throws(USBError) in try device.setAlternateSetting(setting, interface: number) }
    }

    /// Clears a halt (stall) on an endpoint.
    public func clearHalt(endpoint: UInt8) throws(HandleError) {
        try ref.perform { () throws(USBError) in try device.clearHalt(endpoint: endpoint) }
    }
}

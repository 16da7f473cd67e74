// Readers of usbipd's replies, fed from a socket a piece at a time. Each
// says how many bytes it wants next (`bytesWanted`, never more than the rest
// of the reply, so nothing after the reply is read) and takes them, or any
// part of them, through `consume`, which returns the reply once complete:
//
//     var reader = USBIPImportReader(busID: busID)
//     while true {
//         if let device = try reader.consume(read(exactly: reader.bytesWanted)) { return device }
//     }
//
// The reply is checked as it comes (header first, then the count before any
// device), so a refusal or garbage fails at the first bytes that show it.
// Memory grows only with bytes actually received. After an error a reader
// is done: `bytesWanted` is 0 and `consume` throws that error again.

/// Reads an `OP_REP_DEVLIST`: the header, the device count, then each
/// device (312 bytes) followed by its interfaces (4 bytes each).
public struct USBIPDeviceListReader: Sendable {
    private enum Step: Sendable { case header, count, device, interfaces(USBIPExportedDevice) }
    private var step = Step.header
    private var buffer = ReplyBuffer(size: USBIPWire.headerSize)
    private var expected = 0
    private var devices: [USBIPExportedDevice] = []

    /// A reader at the start of a reply.
    public init() {}

    /// How many bytes the reader wants next: at least 1 until the reply is
    /// complete or has failed, 0 after.
    public var bytesWanted: Int { buffer.bytesWanted }

    /// Takes up to ``bytesWanted`` bytes of the reply; returns the devices
    /// once the reply is complete, nil while it wants more.
    ///
    /// Throws ``USBIPWireError/unexpectedVersion(received:operation:)``,
    /// ``USBIPWireError/unexpectedOperation(expected:received:)``,
    /// ``USBIPWireError/refused(_:busID:)``,
    /// ``USBIPWireError/tooManyDevices(_:)``, or
    /// ``USBIPWireError/tooManyBytes(given:wanted:)`` for more bytes than wanted.
    public mutating func consume(_ bytes: [UInt8]) throws(USBIPWireError) -> [USBIPExportedDevice]? {
        guard let data = try buffer.add(bytes) else { return nil }
        do { return try advance(data) } catch { throw buffer.fail(error) }
    }

    private mutating func advance(_ data: [UInt8]) throws(USBIPWireError) -> [USBIPExportedDevice]? {
        switch step {
        case .header:
            try USBIPWire.checkHeader(data, .replyDeviceList, busID: nil)
            step = .count
            buffer.expect(USBIPWire.countSize)
            return nil
        case .count:
            let count = data.be32(0)
            guard count <= USBIPWire.maximumDeviceCount else { throw .tooManyDevices(count) }
            expected = Int(count)
        case .device:
            let device = USBIPExportedDevice(wire: data)
            if device.numberOfInterfaces > 0 {
                step = .interfaces(device)
                buffer.expect(Int(device.numberOfInterfaces) * USBIPWire.interfaceSize)
                return nil
            }
            devices.append(device)
        case .interfaces(var device):
            device.interfaces = stride(from: 0, to: data.count, by: USBIPWire.interfaceSize).map {
                USBIPExportedInterface(interfaceClass: data[$0], interfaceSubClass: data[$0 + 1], interfaceProtocol: data[$0 + 2])
            }
            devices.append(device)
        }
        guard devices.count == expected else {
            step = .device
            buffer.expect(USBIPWire.deviceSize)
            return nil
        }
        buffer.finish()
        return devices
    }
}

/// Reads an `OP_REP_IMPORT`: the header, and when its status is 0 the
/// imported device (312 bytes, no interfaces), which must be the one asked for.
public struct USBIPImportReader: Sendable {
    /// The bus id the import asked for.
    public let busID: String
    private var buffer = ReplyBuffer(size: USBIPWire.headerSize)
    private var headerRead = false

    /// A reader of the reply to an import of `busID`.
    public init(busID: String) { self.busID = busID }

    /// How many bytes the reader wants next: at least 1 until the reply is
    /// complete or has failed, 0 after.
    public var bytesWanted: Int { buffer.bytesWanted }

    /// Takes up to ``bytesWanted`` bytes of the reply; returns the device
    /// once the reply is complete, nil while it wants more. The socket then
    /// carries the device's URBs: hand it to vhci-hcd.
    ///
    /// Throws ``USBIPWireError/unexpectedVersion(received:operation:)``,
    /// ``USBIPWireError/unexpectedOperation(expected:received:)``,
    /// ``USBIPWireError/refused(_:busID:)`` (usbipd refused the import),
    /// ``USBIPWireError/busIDMismatch(requested:received:)``, or
    /// ``USBIPWireError/tooManyBytes(given:wanted:)`` for more bytes than wanted.
    public mutating func consume(_ bytes: [UInt8]) throws(USBIPWireError) -> USBIPExportedDevice? {
        guard let data = try buffer.add(bytes) else { return nil }
        do { return try advance(data) } catch { throw buffer.fail(error) }
    }

    private mutating func advance(_ data: [UInt8]) throws(USBIPWireError) -> USBIPExportedDevice? {
        guard headerRead else {
            try USBIPWire.checkHeader(data, .replyImport, busID: busID)
            headerRead = true
            buffer.expect(USBIPWire.deviceSize)
            return nil
        }
        // Compared as bytes: a lossy decoding could make different ids equal.
        let field = data[USBIPWire.busIDRange]
        guard fieldBytes(field).elementsEqual(busID.utf8) else {
            throw .busIDMismatch(requested: busID, received: fieldString(field))
        }
        buffer.finish()
        return USBIPExportedDevice(wire: data)
    }
}

/// Collects one wire structure's bytes across reads, and remembers when the
/// reply is complete or has failed.
struct ReplyBuffer: Sendable {
    /// The current structure's size; 0 once the reply is complete or failed.
    private var size: Int
    private var bytes: [UInt8] = []
    private var failure: USBIPWireError?

    init(size: Int) { self.size = size }

    var bytesWanted: Int { size - bytes.count }

    /// Adds `input` (at most ``bytesWanted`` bytes); the structure's bytes once all have come.
    mutating func add(_ input: [UInt8]) throws(USBIPWireError) -> [UInt8]? {
        if let failure { throw failure }
        guard input.count <= bytesWanted else { throw fail(.tooManyBytes(given: input.count, wanted: bytesWanted)) }
        guard !input.isEmpty else { return nil }
        if bytes.isEmpty && input.count == size { return input }
        bytes += input
        guard bytes.count == size else { return nil }
        defer { bytes = [] }
        return bytes
    }

    /// Waits for a structure of `size` bytes next.
    mutating func expect(_ size: Int) {
        self.size = size
        bytes = []
    }

    /// Marks the reply complete: nothing more is wanted.
    mutating func finish() { expect(0) }

    /// Marks the reply failed with `error`, which every later `add` throws; returns it.
    mutating func fail(_ error: USBIPWireError) -> USBIPWireError {
        failure = error
        finish()
        return error
    }
}

// The USB/IP protocol's setup phase, as usbipd and the `usbip` tool speak it
// over TCP (the kernel's Documentation/usb/usbip_protocol.rst): the device
// list and the import. Everything is big-endian; every reply is untrusted
// (``USBIPDeviceListReader``, ``USBIPImportReader``). After a successful
// import the socket belongs to vhci-hcd, which speaks the URB part itself.

/// The USB/IP setup protocol's constants and requests.
public enum USBIPWire {
    /// The protocol version every request and reply header carries (usbip 1.1.1).
    public static let version: UInt16 = 0x0111
    /// More devices than this in a device list reply are refused before
    /// anything is allocated for them.
    public static let maximumDeviceCount = 4096

    /// The operation code of a request or reply header.
    public enum Operation: UInt16, Hashable, Sendable, CaseIterable, CustomStringConvertible {
        /// `OP_REQ_DEVLIST`: list the exported devices.
        case requestDeviceList = 0x8005
        /// `OP_REP_DEVLIST`: the exported devices.
        case replyDeviceList = 0x0005
        /// `OP_REQ_IMPORT`: import one device by bus id.
        case requestImport = 0x8003
        /// `OP_REP_IMPORT`: the imported device, or why not.
        case replyImport = 0x0003

        /// The protocol's name and the code, e.g. `OP_REP_IMPORT (0x0003)`.
        public var description: String {
            let name = switch self {
            case .requestDeviceList: "OP_REQ_DEVLIST"
            case .replyDeviceList: "OP_REP_DEVLIST"
            case .requestImport: "OP_REQ_IMPORT"
            case .replyImport: "OP_REP_IMPORT"
            }
            return name + " (" + hex(rawValue) + ")"
        }
    }

    /// `OP_REQ_DEVLIST`: the whole 8-byte request.
    public static let deviceListRequest: [UInt8] = header(.requestDeviceList, status: .ok)

    /// `OP_REQ_IMPORT` for the device `busID` on the exporting host (`1-1.2`):
    /// the 8-byte header and the bus id NUL-padded to 32 bytes.
    ///
    /// Throws ``USBIPWireError/invalidBusID(_:)`` for a bus id that is empty,
    /// 32 bytes or longer (the field keeps a NUL) or holds a NUL.
    public static func importRequest(busID: String) throws(USBIPWireError) -> [UInt8] {
        let bytes = Array(busID.utf8)
        guard !bytes.isEmpty, bytes.count < busIDSize, !bytes.contains(0) else { throw .invalidBusID(busID) }
        var out = header(.requestImport, status: .ok)
        out.appendField(bytes, size: busIDSize)
        return out
    }

    // Sizes of the wire structures.
    static let headerSize = 8
    static let countSize = 4
    static let pathSize = 256
    static let busIDSize = 32
    /// Where `struct usbip_usb_device` has the bus id.
    static let busIDRange = pathSize ..< pathSize + busIDSize
    /// `struct usbip_usb_device`.
    static let deviceSize = 312
    /// `struct usbip_usb_interface`.
    static let interfaceSize = 4

    static func header(_ operation: Operation, status: USBIPStatus) -> [UInt8] {
        var out: [UInt8] = []
        out.appendBE16(version)
        out.appendBE16(operation.rawValue)
        out.appendBE32(status.rawValue)
        return out
    }

    /// An `OP_REP_DEVLIST` as usbipd sends it: each device followed by its
    /// ``USBIPExportedDevice/interfaces`` (the caller keeps their count equal
    /// to ``USBIPExportedDevice/numberOfInterfaces``). For tests and fakes.
    package static func deviceListReply(_ devices: [USBIPExportedDevice], status: USBIPStatus = .ok) -> [UInt8] {
        var out = header(.replyDeviceList, status: status)
        out.appendBE32(UInt32(devices.count))
        for device in devices { device.encode(into: &out, withInterfaces: true) }
        return out
    }

    /// An `OP_REP_IMPORT` as usbipd sends it: the header, and the device
    /// (without interfaces) when there is one. For tests and fakes.
    package static func importReply(status: USBIPStatus = .ok, device: USBIPExportedDevice?) -> [UInt8] {
        var out = header(.replyImport, status: status)
        device?.encode(into: &out, withInterfaces: false)
        return out
    }

    /// What a client asks, from a request's 8-byte header (what a server
    /// reads first): ``Operation/requestDeviceList`` or
    /// ``Operation/requestImport`` (32 bytes of bus id follow, see
    /// ``requestedBusID(_:)``). Throws for another version or operation.
    public static func requestOperation(_ header: [UInt8]) throws(USBIPWireError) -> Operation {
        guard header.count == headerSize else { throw .tooManyBytes(given: header.count, wanted: headerSize) }
        let version = header.be16(0), code = header.be16(2)
        guard version == Self.version else { throw .unexpectedVersion(received: version, operation: code) }
        switch Operation(rawValue: code) {
        case .requestDeviceList: return .requestDeviceList
        case .requestImport: return .requestImport
        default: throw .unexpectedOperation(expected: .requestImport, received: code)
        }
    }

    /// The bytes of an import request after its header: the bus id field.
    public static let requestedBusIDSize = busIDSize

    /// The bus id an import request names, from its 32-byte field (up to the
    /// first NUL; invalid UTF-8 replaced, so it matches no device).
    public static func requestedBusID(_ field: [UInt8]) -> String { fieldString(field[...]) }

    /// Checks a reply header: version, then operation, then status (as the
    /// usbip tool does).
    static func checkHeader(_ bytes: [UInt8], _ expected: Operation, busID: String?) throws(USBIPWireError) {
        let version = bytes.be16(0), code = bytes.be16(2), status = USBIPStatus(rawValue: bytes.be32(4))
        guard version == Self.version else { throw .unexpectedVersion(received: version, operation: code) }
        guard code == expected.rawValue else { throw .unexpectedOperation(expected: expected, received: code) }
        guard status == .ok else { throw .refused(status, busID: busID) }
    }
}

/// The status of a USB/IP reply header (usbipd's `ST_*`): zero is success,
/// anything else a refusal.
public struct USBIPStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The status as sent.
    public var rawValue: UInt32

    /// A status from its value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `ST_OK`: the request succeeded.
    public static let ok = USBIPStatus(rawValue: 0)
    /// `ST_NA`: the device could not be exported.
    public static let notAvailable = USBIPStatus(rawValue: 1)
    /// `ST_DEV_BUSY`: the device is already exported to a host.
    public static let deviceBusy = USBIPStatus(rawValue: 2)
    /// `ST_DEV_ERR`: the device is in an error state.
    public static let deviceError = USBIPStatus(rawValue: 3)
    /// `ST_NODEV`: no exported device has the bus id.
    public static let noDevice = USBIPStatus(rawValue: 4)
    /// `ST_ERROR`: some other error.
    public static let error = USBIPStatus(rawValue: 5)

    /// usbipd's name of the status (`ST_DEV_BUSY`), or `status N` for one it does not define.
    public var name: String {
        switch rawValue {
        case 0: "ST_OK"
        case 1: "ST_NA"
        case 2: "ST_DEV_BUSY"
        case 3: "ST_DEV_ERR"
        case 4: "ST_NODEV"
        case 5: "ST_ERROR"
        default: "status \(rawValue)"
        }
    }

    /// What the status means for whoever asked, as a sentence.
    public var explanation: String {
        switch rawValue {
        case 0: "The request succeeded."
        case 1: "The exporting host could not export the device: it is not (or no longer) bound to usbip-host there, or usbip-host refused it."
        case 2: "The device is already imported by another host: detach it there first."
        case 3: "The device is in an error state on the exporting host: unbind and bind it again there (usbip unbind -b BUSID; usbip bind -b BUSID)."
        case 4: "No device with this bus id is exported there: `usbip list -r HOST` shows what is, and `usbip bind -b BUSID` on that host exports one."
        case 5: "usbipd failed for a reason it did not say: its log on the exporting host may tell."
        default: "usbipd answered with a status the protocol does not define."
        }
    }

    /// The name and the value, e.g. `ST_DEV_BUSY (2)`.
    public var description: String { rawValue <= 5 ? "\(name) (\(rawValue))" : name }
}

/// What is wrong with a USB/IP request or reply. The peer may send anything;
/// each case says what came and what was expected.
public enum USBIPWireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A bus id that cannot go in a request: empty, 32 bytes or longer, or holding a NUL.
    case invalidBusID(String)
    /// A reply whose header has another protocol version than ``USBIPWire/version``
    /// (and this operation code): not a usbipd, or one of another version.
    case unexpectedVersion(received: UInt16, operation: UInt16)
    /// A reply whose header has another operation code than expected.
    case unexpectedOperation(expected: USBIPWire.Operation, received: UInt16)
    /// usbipd refused the request with this nonzero status; `busID` is the
    /// device asked for (nil for a device list).
    case refused(USBIPStatus, busID: String?)
    /// A device list reply claiming more than ``USBIPWire/maximumDeviceCount`` devices.
    case tooManyDevices(UInt32)
    /// An import reply describing another device than the one asked for.
    case busIDMismatch(requested: String, received: String)
    /// A reader was given more bytes than it wanted (a caller's mistake: give
    /// a reader exactly what its `bytesWanted` says, or less).
    case tooManyBytes(given: Int, wanted: Int)

    /// What came, what was expected, and what to do.
    public var description: String {
        switch self {
        case .invalidBusID(let busID):
            "bus id \(quotedForMessage(busID)) cannot be sent: a bus id is 1 to 31 bytes without NUL (like 1-1.2; `usbip list -r HOST` lists them)"
        case .unexpectedVersion(let version, let code):
            "the peer's reply has protocol version \(hex(version)) (operation \(hex(code))), not USB/IP \(hex(USBIPWire.version)): "
                + "check that the host and port are a usbipd's (usbip 1.1.1 or a compatible server)"
        case .unexpectedOperation(let expected, let code):
            "the peer answered with operation \(USBIPWire.Operation(rawValue: code).map { "\($0)" } ?? hex(code)) where \(expected) was expected: "
                + "it is not speaking USB/IP as usbipd does"
        case .refused(let status, let busID):
            (busID.map { "usbipd refused to export \(quotedForMessage($0))" } ?? "usbipd refused to list its devices")
                + " with \(status): \(status.explanation)"
        case .tooManyDevices(let count):
            "the peer's device list claims \(count) devices, more than the \(USBIPWire.maximumDeviceCount) accepted: it is not a plausible usbipd reply"
        case .busIDMismatch(let requested, let received):
            "usbipd answered the import of \(quotedForMessage(requested)) with device \(quotedForMessage(received)): "
                + "the reply is not for the device asked for, so it is not attached"
        case .tooManyBytes(let given, let wanted):
            "a USB/IP reply reader was given \(given) bytes but wanted at most \(wanted): read exactly its bytesWanted"
        }
    }
}

/// `0x0111`.
private func hex(_ value: UInt16) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 4 - digits.count) + digits
}

extension Array where Element == UInt8 {
    /// Appends `value` big-endian.
    mutating func appendBE16(_ value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(truncatingIfNeeded: value))
    }

    /// Appends `value` big-endian.
    mutating func appendBE32(_ value: UInt32) {
        appendBE16(UInt16(value >> 16))
        appendBE16(UInt16(truncatingIfNeeded: value))
    }

    /// Appends `field`'s first `size` bytes, NUL-padded to `size`.
    mutating func appendField(_ field: some Collection<UInt8>, size: Int) {
        let taken = field.prefix(size)
        append(contentsOf: taken)
        append(contentsOf: repeatElement(0, count: size - taken.count))
    }
}

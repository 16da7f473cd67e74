/// One kernel uevent: what `NETLINK_KOBJECT_UEVENT` delivers
/// (`ACTION@DEVPATH\0KEY=VALUE\0...`) and, without the header, what a sysfs
/// `uevent` file holds (`KEY=VALUE\n...`).
///
/// Values may carry bytes a device or a uhid creator chose (`HID_NAME`,
/// `HID_UNIQ`, `HID_PHYS`): they are decoded as UTF-8 with invalid sequences
/// replaced by U+FFFD, and are untrusted.
public struct Uevent: Hashable, Sendable {
    /// `add`, `remove`, `change`, `bind`, `unbind`, `move`, `online`,
    /// `offline`; empty for a parsed sysfs `uevent` file.
    public var action: String
    /// The sysfs path below `/sys`, starting with `/` (e.g.
    /// `/devices/virtual/misc/uhid/0006:1209:0001.0001/hidraw/hidraw0`);
    /// empty for a parsed sysfs `uevent` file unless it names one.
    public var devpath: String
    /// Every `KEY=VALUE` pair in message order.
    public var properties: [(key: String, value: String)]

    /// A uevent from its parts (the parsers make these; tests and fakes may too).
    public init(action: String, devpath: String, properties: [(key: String, value: String)]) {
        self.action = action
        self.devpath = devpath
        self.properties = properties
    }

    /// The first value of `key`, if present.
    public subscript(key: String) -> String? {
        properties.first { $0.key == key }?.value
    }

    /// `SUBSYSTEM` (e.g. `hidraw`, `usb`).
    public var subsystem: String? { self["SUBSYSTEM"] }
    /// `DEVNAME` relative to `/dev` (e.g. `hidraw0`, `bus/usb/001/002`).
    public var devname: String? { self["DEVNAME"] }
    /// `SEQNUM`, the kernel's event sequence number.
    public var sequenceNumber: UInt64? { self["SEQNUM"].flatMap { UInt64($0) } }

    /// The device node under devtmpfs (`/dev/` + `DEVNAME`), when `DEVNAME`
    /// is a plain relative path (no `..` component, no empty component).
    public var devtmpfsNode: String? {
        guard let name = devname, !name.isEmpty, !name.hasPrefix("/") else { return nil }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { return nil }
        return "/dev/" + name
    }

    public static func == (lhs: Uevent, rhs: Uevent) -> Bool {
        lhs.action == rhs.action && lhs.devpath == rhs.devpath
            && lhs.properties.elementsEqual(rhs.properties) { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(action)
        hasher.combine(devpath)
        for property in properties {
            hasher.combine(property.key)
            hasher.combine(property.value)
        }
    }

    /// Larger messages are rejected (the kernel's own limit is 2 KiB of
    /// environment; udev's messages, which are not for us, can be larger).
    public static let maximumMessageBytes = 64 * 1024
    /// More properties than this are rejected.
    public static let maximumProperties = 512

    /// Parses one netlink message from the kernel (`ACTION@DEVPATH\0KEY=VALUE\0...`).
    /// Rejects udevd's messages (`libudev\0` header), a header without `@`
    /// or a devpath not starting with `/`, and messages whose `ACTION` or
    /// `DEVPATH` property contradicts the header.
    public init(netlinkMessage bytes: some Collection<UInt8>) throws(UeventParseError) {
        let bytes = Array(bytes)
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= Self.maximumMessageBytes else { throw .tooLarge(bytes.count) }
        var fields = bytes.split(separator: 0, omittingEmptySubsequences: false)
        // The message normally ends in NUL, which leaves one empty tail field.
        if fields.last?.isEmpty == true { fields.removeLast() }
        guard let header = fields.first else { throw .empty }
        if header.elementsEqual("libudev".utf8) { throw .udevMessage }
        guard let at = header.firstIndex(of: UInt8(ascii: "@")) else { throw .badHeader }
        let action = decodeUTF8(header[header.startIndex..<at])
        let devpath = decodeUTF8(header[(at + 1)...])
        guard !action.isEmpty, devpath.hasPrefix("/") else { throw .badHeader }
        let properties = try Self.parsePairs(fields.dropFirst())
        self.init(action: action, devpath: devpath, properties: properties)
        if let stated = self["ACTION"], stated != action { throw .inconsistent("ACTION") }
        if let stated = self["DEVPATH"], stated != devpath { throw .inconsistent("DEVPATH") }
    }

    /// Parses a sysfs `uevent` file (`KEY=VALUE` lines). Lines without `=`
    /// are skipped; `action` is empty and `devpath` is the `DEVPATH` line if any.
    public init(ueventFile bytes: some Collection<UInt8>) throws(UeventParseError) {
        let bytes = Array(bytes)
        guard bytes.count <= Self.maximumMessageBytes else { throw .tooLarge(bytes.count) }
        let lines = bytes.split(separator: UInt8(ascii: "\n")).filter { $0.contains(UInt8(ascii: "=")) }
        let properties = try Self.parsePairs(lines[...])
        self.init(action: "", devpath: "", properties: properties)
        devpath = self["DEVPATH"] ?? ""
    }

    private static func parsePairs(_ fields: ArraySlice<ArraySlice<UInt8>>) throws(UeventParseError) -> [(key: String, value: String)] {
        guard fields.count <= maximumProperties else { throw .tooManyProperties(fields.count) }
        var result: [(key: String, value: String)] = []
        result.reserveCapacity(fields.count)
        for field in fields {
            guard let equals = field.firstIndex(of: UInt8(ascii: "=")), equals > field.startIndex else {
                throw .badProperty(decodeUTF8(field.prefix(40)))
            }
            let key = field[field.startIndex..<equals]
            // Keys are the kernel's own names: uppercase letters, digits, '_'.
            guard key.allSatisfy({ isKeyByte($0) }) else { throw .badProperty(decodeUTF8(key.prefix(40))) }
            result.append((decodeUTF8(key), decodeUTF8(field[(equals + 1)...])))
        }
        return result
    }
}

/// Why a uevent message was rejected.
public enum UeventParseError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The message has no bytes.
    case empty
    /// The message has this many bytes, more than ``Uevent/maximumMessageBytes``.
    case tooLarge(Int)
    /// A message from udevd (`libudev` header) on the kernel's socket.
    case udevMessage
    /// The first field is not `ACTION@/devpath`.
    case badHeader
    /// A field is not `KEY=VALUE` with a plain key.
    case badProperty(String)
    /// The message has this many properties, more than ``Uevent/maximumProperties``.
    case tooManyProperties(Int)
    /// The named property contradicts the header.
    case inconsistent(String)

    public var description: String {
        switch self {
        case .empty: "empty uevent message"
        case .tooLarge(let n): "uevent message of \(n) bytes exceeds \(Uevent.maximumMessageBytes)"
        case .udevMessage: "a udevd message (libudev header), not a kernel uevent"
        case .badHeader: "uevent header is not ACTION@/devpath"
        case .badProperty(let text): "uevent field \(quotedForMessage(text)) is not KEY=VALUE"
        case .tooManyProperties(let n): "uevent has \(n) properties, more than \(Uevent.maximumProperties)"
        case .inconsistent(let key): "uevent property \(key) contradicts the message header"
        }
    }
}

private func isKeyByte(_ byte: UInt8) -> Bool {
    (65...90).contains(byte) || (97...122).contains(byte) || (48...57).contains(byte) || byte == UInt8(ascii: "_")
}

/// UTF-8 with invalid sequences replaced by U+FFFD.
func decodeUTF8(_ bytes: some Collection<UInt8>) -> String {
    String(decoding: bytes, as: UTF8.self)
}

/// The kernel's `HID_ID` property of a HID device: `BBBB:VVVVVVVV:PPPPPPPP`
/// (bus, vendor, product in hex; vendor and product are 16-bit values the
/// kernel prints in 8 digits).
public struct KernelHIDID: Hashable, Sendable {
    /// The bus (`BUS_*`).
    public var bus: BusType
    /// The vendor ID.
    public var vendorID: UInt16
    /// The product ID.
    public var productID: UInt16

    /// An ID from its parts.
    public init(bus: BusType, vendorID: UInt16, productID: UInt16) {
        self.bus = bus
        self.vendorID = vendorID
        self.productID = productID
    }

    /// Parses `0003:00001209:00000001`; nil for anything else, including
    /// values that do not fit 16 bits.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let bus = parseHex(parts[0], maxDigits: 8), bus <= 0xFFFF,
              let vendor = parseHex(parts[1], maxDigits: 8), vendor <= 0xFFFF,
              let product = parseHex(parts[2], maxDigits: 8), product <= 0xFFFF
        else { return nil }
        self.init(bus: BusType(rawValue: UInt16(bus)), vendorID: UInt16(vendor), productID: UInt16(product))
    }
}

/// What kind of device a snapshot or instance describes.
public enum DeviceKind: String, Hashable, Comparable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// A USB device or one interface of it (libusb).
    case usb
    /// A HID device: one hidraw node (on USB, Bluetooth, I2C, uhid, ...).
    case hid

    public var description: String { rawValue }

    public static func < (lhs: DeviceKind, rhs: DeviceKind) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The bus a HID device is on: Linux's `BUS_*` number from `<linux/input.h>`
/// (as in `HID_ID`). A struct rather than an enum so any raw value has exactly
/// one representation.
public struct BusType: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// `BUS_USB`.
    public static let usb = BusType(rawValue: 0x03)
    /// `BUS_BLUETOOTH`.
    public static let bluetooth = BusType(rawValue: 0x05)
    /// `BUS_VIRTUAL`: uhid and other software devices.
    public static let virtual = BusType(rawValue: 0x06)
    /// `BUS_I2C`.
    public static let i2c = BusType(rawValue: 0x18)
    /// `BUS_SPI`.
    public static let spi = BusType(rawValue: 0x1C)

    private static let names: [(BusType, String)] = [
        (.usb, "usb"), (.bluetooth, "bluetooth"), (.virtual, "virtual"), (.i2c, "i2c"), (.spi, "spi"),
    ]

    /// A known name (`usb`, `bluetooth`, `virtual`, `i2c`, `spi`) or `0x` and four hex digits.
    public var description: String {
        if let name = Self.names.first(where: { $0.0 == self })?.1 { return name }
        let hex = String(rawValue, radix: 16)
        return "0x" + String(repeating: "0", count: 4 - hex.count) + hex
    }

    /// Parses a known name (any ASCII case; `uhid` means `virtual`) or a hex
    /// number (`0x` optional, 1...4 digits).
    public init?(parsing text: String) {
        let lower = asciiLowercased(text)
        if lower == "uhid" { self = .virtual; return }
        if let known = Self.names.first(where: { $0.1 == lower }) { self = known.0; return }
        guard let value = parseHex(lower.hasPrefix("0x") ? String(lower.dropFirst(2)) : lower, maxDigits: 4)
        else { return nil }
        self.init(rawValue: UInt16(value))
    }

    public static func < (lhs: BusType, rhs: BusType) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(UInt16.self) { self.init(rawValue: number); return }
        let text = try container.decode(String.self)
        guard let bus = BusType(parsing: text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "\(quotedForMessage(text)) is not a bus type (usb, bluetooth, virtual, i2c, spi or 0xNNNN)")
        }
        self = bus
    }

    /// Encodes as ``description``.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Parses 1...maxDigits hex digits (either case) and nothing else.
func parseHex(_ text: some StringProtocol, maxDigits: Int) -> UInt64? {
    let bytes = Array(text.utf8)
    guard (1...maxDigits).contains(bytes.count) else { return nil }
    var value: UInt64 = 0
    for byte in bytes {
        guard let nibble = hexValue(byte) else { return nil }
        value = value << 4 | UInt64(nibble)
    }
    return value
}

/// A device interface class: a GUID with a short name and a description.
///
/// A device (or one interface of a composite device) is an *instance* of every
/// class it matches; programs list and watch instances by class.
public struct InterfaceClass: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The class's identity. Two classes with the same GUID are the same class.
    public var guid: GUID
    /// A short name usable on a command line (`--class hid`), e.g. `usb-device`.
    public var name: String
    /// One line for people; may be empty.
    public var description: String
    /// Where this definition came from (built in, a catalog file, or firmware).
    public var origin: ClassOrigin

    /// A class from its parts (a class file or ``WellKnownClass`` make these;
    /// ``isValidName(_:)`` tells whether `name` is acceptable in a file).
    public init(guid: GUID, name: String, description: String, origin: ClassOrigin) {
        self.guid = guid
        self.name = name
        self.description = description
        self.origin = origin
    }

    /// The name given to a GUID that a device declares in firmware (MS OS
    /// descriptors) when no catalog entry names it.
    public static let firmwareDeclaredName = "firmware-declared"

    /// The class for a firmware-declared GUID that no catalog entry defines.
    public static func firmwareDeclared(_ guid: GUID) -> InterfaceClass {
        InterfaceClass(guid: guid, name: firmwareDeclaredName,
                       description: "declared by the device's firmware (MS OS descriptor)",
                       origin: .firmware)
    }

    /// Whether `text` is acceptable as a class name: 1...64 characters from
    /// `[A-Za-z0-9._-]`, starting with a letter or digit, and not itself GUID text.
    public static func isValidName(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (1...64).contains(bytes.count), isAlphanumeric(bytes[0]) else { return false }
        guard bytes.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".")
                                 || $0 == UInt8(ascii: "_") }) else { return false }
        return (try? GUID(parsing: text)) == nil
    }
}

/// Where a class definition came from, for `devif-usb classes`.
public enum ClassOrigin: Hashable, Sendable, Codable, CustomStringConvertible {
    /// Compiled into devif.
    case builtIn
    /// A catalog file; `line` is the line of the `[class …]` header (1-based).
    case file(path: String, line: Int)
    /// Not defined anywhere: a device declared the GUID in its firmware.
    case firmware

    public var description: String {
        switch self {
        case .builtIn: "built-in"
        case .file(let path, let line): "\(path):\(line)"
        case .firmware: "firmware"
        }
    }
}

/// The classes devif knows without any catalog file, with their Windows GUIDs.
///
/// Their membership rules are fixed (see ``Classifier``): every USB device is a
/// `usb-device`; device class 9 is a `usb-hub`; every hidraw node is a `hid`;
/// top-level usage 1/6 is a `keyboard`, 1/2 a `mouse`. A catalog file may rename
/// or describe them and add match lines, but cannot take those rules away.
public enum WellKnownClass {
    /// GUID_DEVINTERFACE_USB_DEVICE.
    public static let usbDevice = InterfaceClass(
        guid: GUID(high: 0xa5dc_bf10_6530_11d2, low: 0x901f_00c0_4fb9_51ed),
        name: "usb-device", description: "Every USB device", origin: .builtIn)
    /// GUID_DEVINTERFACE_HID.
    public static let hid = InterfaceClass(
        guid: GUID(high: 0x4d1e_55b2_f16f_11cf, low: 0x88cb_0011_1100_0030),
        name: "hid", description: "Every HID device (one per hidraw node)", origin: .builtIn)
    /// GUID_DEVINTERFACE_KEYBOARD.
    public static let keyboard = InterfaceClass(
        guid: GUID(high: 0x884b_96c3_56ef_11d1, low: 0xbc8c_00a0_c914_05dd),
        name: "keyboard", description: "HID devices with a keyboard collection (usage 1/6)",
        origin: .builtIn)
    /// GUID_DEVINTERFACE_MOUSE.
    public static let mouse = InterfaceClass(
        guid: GUID(high: 0x378d_e44c_56ef_11d1, low: 0xbc8c_00a0_c914_05dd),
        name: "mouse", description: "HID devices with a mouse collection (usage 1/2)",
        origin: .builtIn)
    /// GUID_DEVINTERFACE_USB_HUB.
    public static let usbHub = InterfaceClass(
        guid: GUID(high: 0xf18a_0e88_c30c_11d0, low: 0x8815_00a0_c906_bed8),
        name: "usb-hub", description: "USB hubs (device class 9)", origin: .builtIn)

    /// All of them, in the order instances list them.
    public static let all: [InterfaceClass] = [usbDevice, usbHub, hid, keyboard, mouse]

    /// The well-known class with this GUID text or name (names ignore ASCII case).
    public static func lookup(_ text: String) -> InterfaceClass? {
        if let guid = try? GUID(parsing: text) { return all.first { $0.guid == guid } }
        return all.first { asciiLowercased($0.name) == asciiLowercased(text) }
    }
}

@inline(__always)
func isAlphanumeric(_ byte: UInt8) -> Bool {
    byte &- 0x30 < 10 || (byte | 0x20) &- 0x61 < 26
}

/// Lowercases ASCII letters only, so lookups do not depend on the locale.
func asciiLowercased(_ text: String) -> String {
    String(decoding: text.utf8.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 | 0x20 : $0 },
           as: UTF8.self)
}

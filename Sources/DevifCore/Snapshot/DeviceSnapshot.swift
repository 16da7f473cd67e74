/// Everything a source knows about one device at arrival: what the classifier
/// reads and what instances show. One snapshot per USB device (libusb) or per
/// hidraw node.
///
/// Every string and byte array here came from the device or the kernel on its
/// behalf and is untrusted: consumers must escape it before putting it in a
/// file name, a terminal or a log.
public struct DeviceSnapshot: Hashable, Sendable, Codable {
    /// USB device or hidraw node.
    public var kind: DeviceKind
    /// Where the device is plugged on USB (for a HID device on USB: its USB
    /// parent's chain). Nil when not on USB, or not known.
    public var portChain: PortChain?
    /// For a device imported over USB/IP (on a `vhci_hcd` bus, and for a HID
    /// device on one): the exporting host and the bus id there, which name
    /// it in place of ``portChain``. Nil for a local device.
    public var remote: RemoteOrigin?
    /// The USB device address on its bus (changes on every replug).
    public var deviceAddress: UInt8?
    /// idVendor.
    public var vendorID: UInt16
    /// idProduct.
    public var productID: UInt16
    /// bcdDevice (device release number), when known.
    public var bcdDevice: UInt16?
    /// bDeviceClass/SubClass/Protocol; nil for a HID device not on USB.
    public var deviceClass: ClassTriple?
    /// iManufacturer string, raw.
    public var manufacturer: String?
    /// iProduct string, raw.
    public var product: String?
    /// iSerialNumber string, raw: nil when the device has none; may be empty,
    /// huge or hostile. For HID not on USB: the kernel's `HID_UNIQ` (if any).
    public var serialNumber: String?
    /// Every configuration descriptor that could be read.
    public var configurations: [USBConfiguration]
    /// bConfigurationValue of the active configuration; nil or 0 when unconfigured.
    public var activeConfigurationValue: UInt8?
    /// HID facts; present when `kind == .hid`.
    public var hid: HIDProperties?
    /// Interface class GUIDs the device declares in MS OS descriptors.
    public var firmwareGUIDs: [FirmwareGUID]
    /// The node to open: `/dev/bus/usb/001/002` or `/dev/hidraw0`.
    public var devnode: String?
    /// The device's sysfs directory.
    public var sysfsPath: String?
    /// Whether this process may open ``devnode``.
    public var access: AccessState
    /// The device left before the source had made it ready: the snapshot
    /// holds only what was known by then (for USB: the ids and descriptors
    /// libusb had read); strings, the active configuration and access may be
    /// missing, and its removal follows. Sources report such a device rather
    /// than hide it, so every announced device is seen to come and go.
    public var leftBeforeReady: Bool

    /// A snapshot from what a source read (sources make these; tests and fakes
    /// build their own).
    public init(kind: DeviceKind, portChain: PortChain? = nil, remote: RemoteOrigin? = nil, deviceAddress: UInt8? = nil,
                vendorID: UInt16, productID: UInt16, bcdDevice: UInt16? = nil,
                deviceClass: ClassTriple? = nil, manufacturer: String? = nil, product: String? = nil,
                serialNumber: String? = nil, configurations: [USBConfiguration] = [],
                activeConfigurationValue: UInt8? = nil, hid: HIDProperties? = nil,
                firmwareGUIDs: [FirmwareGUID] = [], devnode: String? = nil, sysfsPath: String? = nil,
                access: AccessState = .unknown, leftBeforeReady: Bool = false) {
        self.kind = kind
        self.portChain = portChain
        self.remote = remote
        self.deviceAddress = deviceAddress
        self.vendorID = vendorID
        self.productID = productID
        self.bcdDevice = bcdDevice
        self.deviceClass = deviceClass
        self.manufacturer = manufacturer
        self.product = product
        self.serialNumber = serialNumber
        self.configurations = configurations
        self.activeConfigurationValue = activeConfigurationValue
        self.hid = hid
        self.firmwareGUIDs = firmwareGUIDs
        self.devnode = devnode
        self.sysfsPath = sysfsPath
        self.access = access
        self.leftBeforeReady = leftBeforeReady
    }

    /// The USB bus number, from ``portChain``.
    public var busNumber: UInt8? { portChain?.bus }

    /// The active configuration, if the device is configured and it was read.
    public var activeConfiguration: USBConfiguration? {
        guard let value = activeConfigurationValue, value != 0 else { return nil }
        return configurations.first { $0.value == value }
    }
}

/// A USB class, subclass and protocol (device or interface descriptor).
public struct ClassTriple: Hashable, Sendable, Codable, CustomStringConvertible {
    /// bDeviceClass or bInterfaceClass.
    public var classCode: UInt8
    /// bDeviceSubClass or bInterfaceSubClass.
    public var subclass: UInt8
    /// bDeviceProtocol or bInterfaceProtocol.
    public var protocolCode: UInt8

    /// A triple from its three codes, in descriptor order.
    public init(_ classCode: UInt8, _ subclass: UInt8, _ protocolCode: UInt8) {
        self.classCode = classCode
        self.subclass = subclass
        self.protocolCode = protocolCode
    }

    /// `ff/00/00` (hex).
    public var description: String {
        [classCode, subclass, protocolCode].map { hex2($0) }.joined(separator: "/")
    }
}

/// One configuration descriptor.
public struct USBConfiguration: Hashable, Sendable, Codable {
    /// bConfigurationValue.
    public var value: UInt8
    /// Every interface descriptor, one per (interface number, alternate setting).
    public var interfaces: [USBInterface]

    /// A configuration from its parts.
    public init(value: UInt8, interfaces: [USBInterface]) {
        self.value = value
        self.interfaces = interfaces
    }

    /// The distinct interface numbers, ascending (alternate settings do not count).
    public var interfaceNumbers: [UInt8] {
        Array(Set(interfaces.map(\.number))).sorted()
    }

    /// The descriptor that describes interface `number` by default: its lowest
    /// alternate setting (normally 0, the one active after configuration).
    public func defaultSetting(of number: UInt8) -> USBInterface? {
        interfaces.filter { $0.number == number }.min { $0.alternateSetting < $1.alternateSetting }
    }
}

/// One interface descriptor (one alternate setting of one interface).
public struct USBInterface: Hashable, Sendable, Codable {
    /// bInterfaceNumber.
    public var number: UInt8
    /// bAlternateSetting.
    public var alternateSetting: UInt8
    /// bInterfaceClass/SubClass/Protocol.
    public var interfaceClass: ClassTriple
    /// iInterface string, raw.
    public var interfaceString: String?
    /// The endpoint descriptors of this alternate setting.
    public var endpoints: [USBEndpoint]

    /// An interface descriptor from its parts.
    public init(number: UInt8, alternateSetting: UInt8 = 0, interfaceClass: ClassTriple,
                interfaceString: String? = nil, endpoints: [USBEndpoint] = []) {
        self.number = number
        self.alternateSetting = alternateSetting
        self.interfaceClass = interfaceClass
        self.interfaceString = interfaceString
        self.endpoints = endpoints
    }
}

/// One endpoint descriptor.
public struct USBEndpoint: Hashable, Sendable, Codable {
    /// bEndpointAddress (bit 7 set: IN).
    public var address: UInt8
    /// bmAttributes (bits 0-1: transfer type).
    public var attributes: UInt8
    /// wMaxPacketSize as sent (bits 11-12 carry high-bandwidth multipliers).
    public var maxPacketSize: UInt16
    /// bInterval.
    public var interval: UInt8

    /// An endpoint descriptor from its fields.
    public init(address: UInt8, attributes: UInt8, maxPacketSize: UInt16, interval: UInt8) {
        self.address = address
        self.attributes = attributes
        self.maxPacketSize = maxPacketSize
        self.interval = interval
    }

    /// Whether data flows from the device to the host.
    public var isIn: Bool { address & 0x80 != 0 }

    /// The transfer type from bits 0-1 of the attributes.
    public var transferType: TransferType { TransferType(rawValue: attributes & 0x3)! }

    /// An endpoint's transfer type (bmAttributes bits 0-1).
    public enum TransferType: UInt8, Sendable, Codable {
        /// The four USB transfer types, with their bmAttributes values.
        case control = 0, isochronous = 1, bulk = 2, interrupt = 3
    }
}

/// A HID top-level collection's usage.
public struct HIDUsage: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The usage page (1: Generic Desktop; 0xFF00-0xFFFF: vendor-defined).
    public var page: UInt16
    /// The usage within the page (on page 1: 6 keyboard, 2 mouse).
    public var usage: UInt16

    /// A usage from its page and ID.
    public init(page: UInt16, usage: UInt16) {
        self.page = page
        self.usage = usage
    }

    /// Generic Desktop / Keyboard (1/6): members of the built-in `keyboard` class.
    public static let keyboard = HIDUsage(page: 0x01, usage: 0x06)
    /// Generic Desktop / Mouse (1/2): members of the built-in `mouse` class.
    public static let mouse = HIDUsage(page: 0x01, usage: 0x02)

    /// `0001/0006` (hex).
    public var description: String { hex4(page) + "/" + hex4(usage) }
}

/// What a hidraw node adds to a snapshot.
public struct HIDProperties: Hashable, Sendable, Codable {
    /// The top-level collections' usages in descriptor order; the first is the
    /// one hidapi reports as usage page/usage. May be empty if none was known.
    public var usages: [HIDUsage]
    /// The report descriptor as read (untrusted, may be malformed).
    public var reportDescriptor: [UInt8]
    /// bInterfaceNumber when the device is on USB.
    public var interfaceNumber: UInt8?
    /// The bus from `HID_ID`.
    public var busType: BusType
    /// The kernel's `HID_PHYS` (set by the driver, or by whoever created a
    /// uhid device: untrusted). The location of a device not on USB.
    public var physicalLocation: String?

    /// HID properties from what the source read.
    public init(usages: [HIDUsage] = [], reportDescriptor: [UInt8] = [], interfaceNumber: UInt8? = nil,
                busType: BusType, physicalLocation: String? = nil) {
        self.usages = usages
        self.reportDescriptor = reportDescriptor
        self.interfaceNumber = interfaceNumber
        self.busType = busType
        self.physicalLocation = physicalLocation
    }

    /// The first usage page (hidapi's `usage_page`), if known.
    public var usagePage: UInt16? { usages.first?.page }
    /// The first usage (hidapi's `usage`), if known.
    public var usage: UInt16? { usages.first?.usage }
}

/// An interface class GUID declared by the device's firmware.
public struct FirmwareGUID: Hashable, Sendable, Codable {
    /// The declared GUID.
    public var guid: GUID
    /// The interface it is declared for (an MS OS 2.0 function subset's first
    /// interface, or an MS OS 1.0 extended property's interface); nil for the
    /// whole device.
    public var interfaceNumber: UInt8?
    /// The descriptor set that declared it.
    public var source: Source

    /// A declaration of `guid` for interface `interfaceNumber` (nil: the device).
    public init(guid: GUID, interfaceNumber: UInt8? = nil, source: Source) {
        self.guid = guid
        self.interfaceNumber = interfaceNumber
        self.source = source
    }

    /// Which descriptor set declared it.
    public enum Source: String, Hashable, Sendable, Codable {
        /// Microsoft OS 2.0 descriptors (BOS platform capability).
        case msOS20
        /// Microsoft OS 1.0 descriptors (string 0xEE, extended properties).
        case msOS10
    }
}

/// Whether this process may open the device's node.
public enum AccessState: Hashable, Sendable, Codable, CustomStringConvertible {
    /// It may.
    case ok
    /// It may not; `reason` says why (e.g. the errno text and the node's mode).
    case denied(reason: String)
    /// Not checked (yet).
    case unknown

    public var description: String {
        switch self {
        case .ok: "ok"
        case .denied(let reason): "denied: \(reason)"
        case .unknown: "unknown"
        }
    }
}

/// Two lowercase hex digits (ids in links, JSON and messages).
public func hex2(_ value: UInt8) -> String {
    String(decoding: [lowerHexDigits[Int(value >> 4)], lowerHexDigits[Int(value & 0xF)]], as: UTF8.self)
}

/// Four lowercase hex digits (ids in links, JSON and messages).
public func hex4(_ value: UInt16) -> String {
    hex2(UInt8(value >> 8)) + hex2(UInt8(value & 0xFF))
}

/// One device a usbipd exports, as its device list or import reply
/// describes it (`struct usbip_usb_device`, 312 bytes). Every field is the
/// peer's word, untrusted.
public struct USBIPExportedDevice: Hashable, Sendable, Codable {
    /// The device's sysfs path on the exporting host (up to 256 bytes).
    public var path: String
    /// The device's bus id on the exporting host (`1-1.2`), what an import names.
    public var busID: String
    /// The bus number on the exporting host.
    public var busNumber: UInt32
    /// The device number on that bus.
    public var deviceNumber: UInt32
    /// The speed as sent (the kernel's `enum usb_device_speed`); see ``knownSpeed``.
    public var speed: UInt32
    /// `idVendor`.
    public var vendorID: UInt16
    /// `idProduct`.
    public var productID: UInt16
    /// `bcdDevice`.
    public var bcdDevice: UInt16
    /// `bDeviceClass`.
    public var deviceClass: UInt8
    /// `bDeviceSubClass`.
    public var deviceSubClass: UInt8
    /// `bDeviceProtocol`.
    public var deviceProtocol: UInt8
    /// `bConfigurationValue` of the active configuration.
    public var configurationValue: UInt8
    /// `bNumConfigurations`.
    public var numberOfConfigurations: UInt8
    /// `bNumInterfaces` of the active configuration.
    public var numberOfInterfaces: UInt8
    /// The interfaces of the active configuration: only a device list reply
    /// carries them (as many as ``numberOfInterfaces``); empty from an import.
    public var interfaces: [USBIPExportedInterface]

    /// A device from its fields.
    public init(path: String, busID: String, busNumber: UInt32, deviceNumber: UInt32, speed: UInt32,
                vendorID: UInt16, productID: UInt16, bcdDevice: UInt16,
                deviceClass: UInt8, deviceSubClass: UInt8, deviceProtocol: UInt8,
                configurationValue: UInt8, numberOfConfigurations: UInt8, numberOfInterfaces: UInt8,
                interfaces: [USBIPExportedInterface] = []) {
        self.path = path
        self.busID = busID
        self.busNumber = busNumber
        self.deviceNumber = deviceNumber
        self.speed = speed
        self.vendorID = vendorID
        self.productID = productID
        self.bcdDevice = bcdDevice
        self.deviceClass = deviceClass
        self.deviceSubClass = deviceSubClass
        self.deviceProtocol = deviceProtocol
        self.configurationValue = configurationValue
        self.numberOfConfigurations = numberOfConfigurations
        self.numberOfInterfaces = numberOfInterfaces
        self.interfaces = interfaces
    }

    /// ``speed`` as a known speed; nil for a value the kernel does not define.
    public var knownSpeed: USBDeviceSpeed? { USBDeviceSpeed(rawValue: speed) }

    /// The device id vhci-hcd's `attach` file takes, computed as the usbip
    /// tool does: `busNumber << 16 | deviceNumber`. The exporting host checks
    /// it in every request.
    public var deviceID: UInt32 { busNumber << 16 | deviceNumber }

    /// Decodes the 312 bytes of `struct usbip_usb_device` (the caller checks the count).
    init(wire bytes: [UInt8]) {
        self.init(path: fieldString(bytes[0 ..< USBIPWire.pathSize]), busID: fieldString(bytes[USBIPWire.busIDRange]),
                  busNumber: bytes.be32(288), deviceNumber: bytes.be32(292), speed: bytes.be32(296),
                  vendorID: bytes.be16(300), productID: bytes.be16(302), bcdDevice: bytes.be16(304),
                  deviceClass: bytes[306], deviceSubClass: bytes[307], deviceProtocol: bytes[308],
                  configurationValue: bytes[309], numberOfConfigurations: bytes[310], numberOfInterfaces: bytes[311])
    }

    /// Appends `struct usbip_usb_device` (strings cut to their field) and,
    /// `withInterfaces`, each of ``interfaces``.
    func encode(into out: inout [UInt8], withInterfaces: Bool) {
        out.appendField(path.utf8, size: USBIPWire.pathSize)
        out.appendField(busID.utf8, size: USBIPWire.busIDSize)
        out.appendBE32(busNumber)
        out.appendBE32(deviceNumber)
        out.appendBE32(speed)
        out.appendBE16(vendorID)
        out.appendBE16(productID)
        out.appendBE16(bcdDevice)
        out += [deviceClass, deviceSubClass, deviceProtocol, configurationValue, numberOfConfigurations, numberOfInterfaces]
        if withInterfaces {
            for interface in interfaces {
                out += [interface.interfaceClass, interface.interfaceSubClass, interface.interfaceProtocol, 0]
            }
        }
    }
}

/// One interface of an exported device, from a device list reply
/// (`struct usbip_usb_interface`, 4 bytes with one of padding).
public struct USBIPExportedInterface: Hashable, Sendable, Codable {
    /// `bInterfaceClass`.
    public var interfaceClass: UInt8
    /// `bInterfaceSubClass`.
    public var interfaceSubClass: UInt8
    /// `bInterfaceProtocol`.
    public var interfaceProtocol: UInt8

    /// An interface from its class triple.
    public init(interfaceClass: UInt8, interfaceSubClass: UInt8, interfaceProtocol: UInt8) {
        self.interfaceClass = interfaceClass
        self.interfaceSubClass = interfaceSubClass
        self.interfaceProtocol = interfaceProtocol
    }
}

/// A USB device's speed as the Linux kernel numbers it (`enum
/// usb_device_speed`), which USB/IP sends and vhci-hcd's files use.
public enum USBDeviceSpeed: UInt32, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// Not known.
    case unknown = 0
    /// USB 1.x low speed, 1.5 Mbit/s.
    case low = 1
    /// USB 1.x full speed, 12 Mbit/s.
    case full = 2
    /// USB 2.0 high speed, 480 Mbit/s.
    case high = 3
    /// Wireless USB.
    case wireless = 4
    /// USB 3.x SuperSpeed, 5 Gbit/s.
    case superSpeed = 5
    /// USB 3.1 SuperSpeed+, 10 Gbit/s or more.
    case superSpeedPlus = 6

    /// The kernel's name (`usb_speed_string`): `high-speed`, `super-speed`, ...
    public var description: String {
        switch self {
        case .unknown: "UNKNOWN"
        case .low: "low-speed"
        case .full: "full-speed"
        case .high: "high-speed"
        case .wireless: "wireless"
        case .superSpeed: "super-speed"
        case .superSpeedPlus: "super-speed-plus"
        }
    }
}

/// A fixed-size string field: the bytes up to the first NUL (all of them
/// without one), UTF-8 with invalid sequences replaced by U+FFFD.
func fieldString(_ field: ArraySlice<UInt8>) -> String {
    decodeUTF8(fieldBytes(field))
}

/// A fixed-size string field's bytes up to the first NUL (all of them without one).
func fieldBytes(_ field: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
    field[..<(field.firstIndex(of: 0) ?? field.endIndex)]
}

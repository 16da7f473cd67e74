import DevifCore
import Glibc

/// The kernel's USB/IP exporter for real devices, `usbip-host`, through its
/// driver files: what `usbip bind` and `usbip unbind` do, so a running usbipd
/// serves the device.
package enum USBIPHost {
    package static let driverDirectory = "/sys/bus/usb/drivers/usbip-host"

    /// Whether usbip-host is loaded.
    package static var isLoaded: Bool { Sysfs.exists(driverDirectory + "/bind") }

    /// Whether the USB device `busID` (its sysfs name, `1-1.2`) is bound to
    /// usbip-host, that is, exported.
    package static func isExported(busID: String) -> Bool {
        guard let driver = try? Syscalls.readlink("/sys/bus/usb/devices/\(busID)/driver") else { return false }
        return driver.hasSuffix("/usbip-host")
    }

    /// Takes `busID` from its driver and gives it to usbip-host, as `usbip
    /// bind` does (the generic driver is unbound, so the host's own drivers
    /// of its interfaces let go too).
    package static func bind(busID: String) throws(LinuxError) {
        guard !isExported(busID: busID) else { return }
        let device = "/sys/bus/usb/devices/\(busID)"
        guard Sysfs.exists(device) else { throw LinuxError(code: ENODEV, call: "bind", subject: device) }
        if Sysfs.exists(device + "/driver") {
            try Sysfs.write(device + "/driver/unbind", busID)
        }
        try Sysfs.write(driverDirectory + "/match_busid", "add \(busID)")
        do {
            try Sysfs.write(driverDirectory + "/bind", busID)
        } catch {
            // Give it back rather than leave it driverless.
            try? Sysfs.write(driverDirectory + "/match_busid", "del \(busID)")
            try? Sysfs.write("/sys/bus/usb/drivers_probe", busID)
            throw error
        }
    }

    /// Gives `busID` back to its usual drivers, as `usbip unbind` does.
    package static func unbind(busID: String) throws(LinuxError) {
        if isExported(busID: busID) {
            try Sysfs.write(driverDirectory + "/unbind", busID)
        }
        try? Sysfs.write(driverDirectory + "/match_busid", "del \(busID)")
        try Sysfs.write("/sys/bus/usb/drivers_probe", busID)
    }

    /// What usbipd tells of the local device `busID`, read from sysfs as
    /// usbipd reads it: ids, class codes, speed, the active configuration's
    /// interfaces (none while usbip-host holds it unconfigured). Nil when
    /// the device is gone.
    package static func describe(busID: String) -> USBIPExportedDevice? {
        let dir = "/sys/bus/usb/devices/\(busID)"
        guard let bus = Sysfs.decimal(dir + "/busnum"), let number = Sysfs.decimal(dir + "/devnum"),
              let vendor = Sysfs.hex(dir + "/idVendor"), let product = Sysfs.hex(dir + "/idProduct") else { return nil }
        func hex8(_ name: String) -> UInt8 { UInt8(truncatingIfNeeded: Sysfs.hex(dir + "/" + name) ?? 0) }
        func dec8(_ name: String) -> UInt8 { UInt8(truncatingIfNeeded: Sysfs.decimal(dir + "/" + name) ?? 0) }
        let configuration = dec8("bConfigurationValue")
        var interfaces: [USBIPExportedInterface] = []
        if configuration != 0 {
            for n in 0..<Int(dec8("bNumInterfaces")) {
                let i = "\(dir)/\(busID):\(configuration).\(n)"
                interfaces.append(USBIPExportedInterface(
                    interfaceClass: UInt8(truncatingIfNeeded: Sysfs.hex(i + "/bInterfaceClass") ?? 0),
                    interfaceSubClass: UInt8(truncatingIfNeeded: Sysfs.hex(i + "/bInterfaceSubClass") ?? 0),
                    interfaceProtocol: UInt8(truncatingIfNeeded: Sysfs.hex(i + "/bInterfaceProtocol") ?? 0)))
            }
        }
        let path = Sysfs.canonical(dir) ?? dir
        return USBIPExportedDevice(
            path: path, busID: busID, busNumber: UInt32(bus), deviceNumber: UInt32(number),
            speed: speed(Sysfs.string(dir + "/speed", limit: 32) ?? ""),
            vendorID: UInt16(truncatingIfNeeded: vendor), productID: UInt16(truncatingIfNeeded: product),
            bcdDevice: UInt16(truncatingIfNeeded: Sysfs.hex(dir + "/bcdDevice") ?? 0),
            deviceClass: hex8("bDeviceClass"), deviceSubClass: hex8("bDeviceSubClass"), deviceProtocol: hex8("bDeviceProtocol"),
            configurationValue: configuration, numberOfConfigurations: dec8("bNumConfigurations"),
            numberOfInterfaces: UInt8(interfaces.count), interfaces: interfaces)
    }

    /// sysfs's `speed` (Mb/s) as the kernel's `enum usb_device_speed`.
    static func speed(_ text: String) -> UInt32 {
        switch text.trimmingASCIIWhitespace() {
        case "1.5": 1
        case "12": 2
        case "480": 3
        case "53.3-480": 4
        case "5000": 5
        case "10000", "20000": 6
        default: 0
        }
    }

    /// Whether the exported device `busID` is free for an importer
    /// (usbip-host's `usbip_status` 1).
    package static func isAvailable(busID: String) -> Bool {
        Sysfs.decimal("/sys/bus/usb/devices/\(busID)/usbip_status") == 1
    }

    /// Hands the connected socket `fd` to usbip-host for `busID`: from now on
    /// the kernel serves the device on it. The caller closes its descriptor.
    package static func handOver(busID: String, socket fd: Int32) throws(LinuxError) {
        try Sysfs.write("/sys/bus/usb/devices/\(busID)/usbip_sockfd", "\(fd)")
    }
}

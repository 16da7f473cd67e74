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
}

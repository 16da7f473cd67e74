import DevifCore
import DevifLinux

extension RawDevice {
    /// A device's descriptors and place from its sysfs directory (no
    /// permission, no I/O to the device): `devpath` is below /sys
    /// (`/devices/.../usb1/1-1`). Nil when it is gone or not a USB device
    /// directory (its name is not a port chain, `busnum`/`devnum` are
    /// missing or disagree with it); throws when `descriptors` does not
    /// start with a device descriptor. The USB source's kernel mode and the
    /// single-node snapshot (`USBSource.snapshot(ofNode:)`) read devices here.
    init?(sysfsDevpath devpath: String) throws(DescriptorParser.Failure) {
        let dir = "/sys" + devpath
        guard let chain = PortChain(parsing: Sysfs.name(of: devpath)),
              let bus = Sysfs.decimal(dir + "/busnum"), let address = Sysfs.decimal(dir + "/devnum"),
              let bus8 = UInt8(exactly: bus), let address8 = UInt8(exactly: address), chain.bus == bus8,
              let bytes = try? Sysfs.read(dir + "/descriptors", limit: 1 << 20)
        else { return nil }
        self = try DescriptorParser.parse(bytes, bus: bus8, ports: chain.ports, address: address8)
    }
}

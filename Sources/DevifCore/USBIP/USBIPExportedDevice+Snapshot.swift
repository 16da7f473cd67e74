extension USBIPExportedDevice {
    /// What a usbipd's device list tells of this device, as a snapshot the
    /// classifier takes: ids, the device's class triple and the active
    /// configuration's interfaces (alternate setting 0, numbered in the
    /// order listed, as usbipd reads them), placed at `host` and its bus id
    /// there. No strings: the list carries none, so no serial number, and
    /// classes that need more than ids and class codes cannot match.
    public func snapshot(host: String, port: String = RemoteOrigin.defaultPort) -> DeviceSnapshot {
        let value = configurationValue == 0 ? 1 : configurationValue
        let interfaces = self.interfaces.enumerated().map { n, i in
            USBInterface(number: UInt8(truncatingIfNeeded: n), alternateSetting: 0,
                         interfaceClass: ClassTriple(i.interfaceClass, i.interfaceSubClass, i.interfaceProtocol))
        }
        return DeviceSnapshot(
            kind: .usb, remote: RemoteOrigin(host: host, port: port, busID: busID),
            vendorID: vendorID, productID: productID, bcdDevice: bcdDevice,
            deviceClass: ClassTriple(deviceClass, deviceSubClass, deviceProtocol),
            configurations: interfaces.isEmpty ? [] : [USBConfiguration(value: value, interfaces: interfaces)],
            activeConfigurationValue: interfaces.isEmpty ? nil : value)
    }
}

import CLibUSB
import DevifCore

extension RawDevice {
    /// Reads a libusb device's cached descriptors (no device I/O: libusb
    /// keeps what the kernel read at enumeration). A configuration that does
    /// not parse is left out and named in `problems`.
    init(libusbDevice dev: OpaquePointer) throws(USBError) {
        let d = try LibUSB.deviceDescriptor(dev)
        var problems: [String] = []
        let ports: [UInt8]
        do { ports = try LibUSB.portNumbers(dev) } catch {
            ports = []
            problems.append("port numbers: \(error)")
        }
        var configurations: [RawConfiguration] = []
        for index in 0..<d.bNumConfigurations {
            do {
                configurations.append(try LibUSB.withConfigDescriptor(dev, index: index) { RawConfiguration($0) })
            } catch {
                problems.append("configuration \(index): \(error)")
            }
        }
        self.init(bcdUSB: d.bcdUSB, vendorID: d.idVendor, productID: d.idProduct, bcdDevice: d.bcdDevice,
                  deviceClass: ClassTriple(d.bDeviceClass, d.bDeviceSubClass, d.bDeviceProtocol),
                  manufacturerIndex: d.iManufacturer, productIndex: d.iProduct, serialIndex: d.iSerialNumber,
                  declaredConfigurations: d.bNumConfigurations, configurations: configurations,
                  bus: LibUSB.busNumber(dev), ports: ports, address: LibUSB.deviceAddress(dev),
                  problems: problems)
    }
}

extension RawConfiguration {
    /// Copies libusb's parsed configuration (its arrays live only until it is freed).
    init(_ c: libusb_config_descriptor) {
        var interfaces: [RawInterface] = []
        for i in 0..<Int(c.bNumInterfaces) {
            guard let interface = c.interface?[i], let alts = interface.altsetting else { continue }
            for a in 0..<Int(max(interface.num_altsetting, 0)) {
                let alt = alts[a]
                var endpoints: [USBEndpoint] = []
                if let eps = alt.endpoint {
                    for e in 0..<Int(alt.bNumEndpoints) {
                        let ep = eps[e]
                        endpoints.append(USBEndpoint(address: ep.bEndpointAddress, attributes: ep.bmAttributes,
                                                     maxPacketSize: ep.wMaxPacketSize, interval: ep.bInterval))
                    }
                }
                interfaces.append(RawInterface(
                    descriptor: USBInterface(number: alt.bInterfaceNumber, alternateSetting: alt.bAlternateSetting,
                                             interfaceClass: ClassTriple(alt.bInterfaceClass, alt.bInterfaceSubClass,
                                                                         alt.bInterfaceProtocol),
                                             endpoints: endpoints),
                    stringIndex: alt.iInterface))
            }
        }
        self.init(value: c.bConfigurationValue, interfaces: interfaces)
    }
}

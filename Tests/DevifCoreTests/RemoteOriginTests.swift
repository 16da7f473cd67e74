import Testing
@testable import DevifCore

/// How an imported (USB/IP) device is named: by the exporting host and its
/// bus id there, never by the vhci port it happens to sit on.
@Suite struct RemoteOriginTests {
    let classifier = Classifier(catalog: .builtIn)

    func usbSnapshot(serial: String?, chain: String, remote: RemoteOrigin?) -> DeviceSnapshot {
        DeviceSnapshot(kind: .usb, portChain: PortChain(parsing: chain), remote: remote,
                       vendorID: 0x1209, productID: 0x0e02, deviceClass: ClassTriple(0, 0, 0), serialNumber: serial)
    }

    @Test func locationOmitsTheDefaultPortAndBracketsIPv6() {
        #expect(RemoteOrigin(host: "10.0.0.5", busID: "1-1.2").location == "usbip:10.0.0.5/1-1.2")
        #expect(RemoteOrigin(host: "lab", port: "3241", busID: "usbip-vudc.0").location == "usbip:lab:3241/usbip-vudc.0")
        #expect(RemoteOrigin(host: "fe80::1", busID: "2-1").location == "usbip:[fe80::1]/2-1")
        #expect(RemoteOrigin(host: "10.0.0.5", busID: "1-1").description == "usbip://10.0.0.5:3240/1-1")
    }

    @Test func aNoSerialImportIsNamedByOriginWhicheverVHCIPortItIsOn() throws {
        let origin = RemoteOrigin(host: "10.77.0.1", busID: "usbip-vudc.1")
        let first = classifier.classify(usbSnapshot(serial: nil, chain: "3-1", remote: origin))
        let again = classifier.classify(usbSnapshot(serial: nil, chain: "3-2", remote: origin))
        let link = try #require(first.first?.memberships.first?.symbolicLink.rawValue)
        #expect(link == "usb#vid_1209&pid_0e02#@usbip%3A10.77.0.1%2Fusbip-vudc.1#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")
        #expect(again.first?.memberships.first?.symbolicLink.rawValue == link)
        // Another host's device on the same bus id is another instance.
        let other = classifier.classify(usbSnapshot(serial: nil, chain: "3-1", remote: RemoteOrigin(host: "10.77.0.9", busID: "usbip-vudc.1")))
        #expect(other.first?.memberships.first?.symbolicLink.rawValue != link)
    }

    @Test func aSerialImportHasItsLocalLink() {
        let local = classifier.classify(usbSnapshot(serial: "IP-S", chain: "1-1", remote: nil))
        let imported = classifier.classify(usbSnapshot(serial: "IP-S", chain: "3-1", remote: RemoteOrigin(host: "h", busID: "1-1")))
        #expect(local.map { $0.memberships.map(\.symbolicLink) } == imported.map { $0.memberships.map(\.symbolicLink) })
    }

    @Test func aHIDNodeOnAnImportedDeviceIsNamedByOriginToo() throws {
        let origin = RemoteOrigin(host: "h", busID: "1-4")
        var snapshot = DeviceSnapshot(kind: .hid, portChain: PortChain(parsing: "3-1"), remote: origin, vendorID: 0x1209, productID: 0x0e04,
                                      hid: HIDProperties(busType: .usb))
        snapshot.hid?.interfaceNumber = 0
        let link = try #require(classifier.classify(snapshot).first?.memberships.first?.symbolicLink.rawValue)
        #expect(link.contains("#@usbip%3Ah%2F1-4#"), "\(link)")
    }

    @Test func anExportedDeviceClassifiesFromIdsAndClassCodes() {
        let device = USBIPExportedDevice(path: "/sys/devices/platform/usbip-vudc.0", busID: "usbip-vudc.0", busNumber: 0, deviceNumber: 0,
                                         speed: 3, vendorID: 0x1209, productID: 0x0e01, bcdDevice: 0x0100, deviceClass: 0, deviceSubClass: 0,
                                         deviceProtocol: 0, configurationValue: 1, numberOfConfigurations: 1, numberOfInterfaces: 2,
                                         interfaces: [USBIPExportedInterface(interfaceClass: 3, interfaceSubClass: 0, interfaceProtocol: 0),
                                                      USBIPExportedInterface(interfaceClass: 0xff, interfaceSubClass: 0, interfaceProtocol: 0)])
        let snapshot = device.snapshot(host: "h")
        #expect(snapshot.remote?.location == "usbip:h/usbip-vudc.0")
        #expect(snapshot.serialNumber == nil)
        #expect(snapshot.activeConfiguration?.interfaceNumbers == [0, 1])
        let instances = classifier.classify(snapshot)
        #expect(instances.count == 3, "a composite device and its two interfaces")
    }
}

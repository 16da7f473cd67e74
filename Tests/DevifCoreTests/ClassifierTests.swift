import Foundation
import Testing
@testable import DevifCore

@Suite struct ClassifierTests {
    static let vendorGUID = try! GUID(parsing: "{0123abcd-4567-89ab-cdef-0123456789ab}")
    static let bulkGUID = try! GUID(parsing: "{11111111-2222-3333-4444-555555555555}")
    static let declaredGUID = try! GUID(parsing: "{88888888-2222-3333-4444-555555555555}")
    static let namedDeclaredGUID = try! GUID(parsing: "{99999999-2222-3333-4444-555555555555}")

    static let catalog: ClassCatalog = {
        var catalog = ClassCatalog.builtIn
        let parsed = CatalogParser.parse("""
            [class {0123abcd-4567-89ab-cdef-0123456789ab}]
            name = vendor-device
            match = vid=1209 pid=0001
            match = kind=hid vid=1209 hid-usage-page=ff00
            [class {11111111-2222-3333-4444-555555555555}]
            name = vendor-bulk
            match = usb-class=ff usb-subclass=00
            [class {99999999-2222-3333-4444-555555555555}]
            name = named-by-catalog
            """, file: "test.conf")
        precondition(parsed.diagnostics.isEmpty, "\(parsed.diagnostics)")
        var ignored: [CatalogDiagnostic] = []
        catalog.merge(parsed.definitions, from: "test.conf", diagnostics: &ignored)
        return catalog
    }()
    let classifier = Classifier(catalog: ClassifierTests.catalog)

    static func interface(_ number: UInt8, alt: UInt8 = 0, _ triple: ClassTriple) -> USBInterface {
        USBInterface(number: number, alternateSetting: alt, interfaceClass: triple, interfaceString: "if\(number)",
                     endpoints: [USBEndpoint(address: 0x81, attributes: 2, maxPacketSize: 512, interval: 0)])
    }

    static func usb(vid: UInt16 = 0x1209, pid: UInt16, deviceClass: ClassTriple = ClassTriple(0, 0, 0),
                    serial: String? = "SER-0001", interfaces: [USBInterface],
                    firmware: [FirmwareGUID] = []) -> DeviceSnapshot {
        DeviceSnapshot(kind: .usb, portChain: PortChain(bus: 1, ports: [1, 4]), deviceAddress: 5, vendorID: vid,
                       productID: pid, bcdDevice: 0x0100, deviceClass: deviceClass, manufacturer: "M", product: "P",
                       serialNumber: serial, configurations: [USBConfiguration(value: 1, interfaces: interfaces)],
                       activeConfigurationValue: 1, firmwareGUIDs: firmware, devnode: "/dev/bus/usb/001/005",
                       sysfsPath: "/sys/bus/usb/devices/1-1.4", access: .ok)
    }

    @Test func singleInterfaceDeviceGetsDeviceAndInterfaceClasses() throws {
        let instances = classifier.classify(Self.usb(pid: 0x0001, interfaces: [Self.interface(0, ClassTriple(0xff, 0, 0))]))
        try #require(instances.count == 1)
        let device = instances[0]
        #expect(device.classes.map(\.name) == ["usb-device", "vendor-device", "vendor-bulk"])
        #expect(device.identity.interfaceNumber == nil)
        #expect(device.memberships[0].symbolicLink.rawValue
                == "usb#vid_1209&pid_0001#SER-0001#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")
        #expect(device.devnode == "/dev/bus/usb/001/005")
        #expect(device.interfaceString == "if0")
        #expect(device.identity.portChain == PortChain(bus: 1, ports: [1, 4]))
        #expect(device.access == .ok)
        #expect(device.memberships.allSatisfy { $0.symbolicLink.names(device.identity) })
    }

    @Test func compositeDeviceGetsOneInstancePerInterfaceIgnoringAltSettings() throws {
        let snapshot = Self.usb(pid: 0x0002, serial: nil, interfaces: [
            Self.interface(0, ClassTriple(0x03, 0, 0)),
            Self.interface(1, ClassTriple(0xff, 0, 0)),
            Self.interface(1, alt: 1, ClassTriple(0xfe, 1, 1)),
        ])
        let instances = classifier.classify(snapshot)
        try #require(instances.count == 3)
        #expect(instances[0].identity.interfaceNumber == nil)
        #expect(instances[0].classes.map(\.name) == ["usb-device"]) // pid 0002: no device rule
        #expect(instances[1].identity.interfaceNumber == 0)
        #expect(instances[1].classes.isEmpty)
        #expect(instances[1].usbClass == ClassTriple(3, 0, 0))
        #expect(instances[2].identity.interfaceNumber == 1)
        #expect(instances[2].classes.map(\.name) == ["vendor-bulk"])
        #expect(instances[2].memberships[0].symbolicLink.rawValue
                == "usb#vid_1209&pid_0002&mi_01#@1-1.4#{11111111-2222-3333-4444-555555555555}")

        // Alternate settings alone don't make a device composite.
        let single = Self.usb(pid: 0x0003, interfaces: [Self.interface(0, ClassTriple(0xff, 0, 0)),
                                                         Self.interface(0, alt: 1, ClassTriple(0xff, 0, 0))])
        #expect(classifier.classify(single).count == 1)
    }

    @Test func hubsAndUnconfiguredDevices() {
        let hub = Self.usb(vid: 0x1d6b, pid: 2, deviceClass: ClassTriple(9, 0, 1), serial: "0000:00:14.0",
                           interfaces: [Self.interface(0, ClassTriple(9, 0, 0))])
        #expect(classifier.classify(hub).map { $0.classes.map(\.name) } == [["usb-device", "usb-hub"]])
        var unconfigured = Self.usb(pid: 1, interfaces: [Self.interface(0, ClassTriple(0xff, 0, 0))])
        unconfigured.activeConfigurationValue = 0
        let instances = classifier.classify(unconfigured)
        #expect(instances.count == 1)
        #expect(instances[0].classes.map(\.name) == ["usb-device", "vendor-device"])
    }

    @Test func firmwareDeclaredGUIDsBecomeClasses() throws {
        let composite = Self.usb(pid: 0x0010, interfaces: [
            Self.interface(0, ClassTriple(0xff, 0x42, 0)), Self.interface(1, ClassTriple(0xff, 0x42, 1)),
        ], firmware: [
            FirmwareGUID(guid: Self.declaredGUID, interfaceNumber: 1, source: .msOS20),
            FirmwareGUID(guid: Self.namedDeclaredGUID, interfaceNumber: nil, source: .msOS10),
            FirmwareGUID(guid: Self.declaredGUID, interfaceNumber: 7, source: .msOS20), // no such interface
        ])
        let instances = classifier.classify(composite)
        try #require(instances.count == 3)
        #expect(instances[0].classes.map(\.guid) == [WellKnownClass.usbDevice.guid, Self.declaredGUID,
                                                     Self.namedDeclaredGUID])
        #expect(instances[0].classes[1].name == "firmware-declared")
        #expect(instances[0].classes[1].origin == .firmware)
        #expect(instances[0].classes[2].name == "named-by-catalog")
        #expect(instances[1].classes.isEmpty)
        #expect(instances[2].classes.map(\.guid) == [Self.declaredGUID])

        // On a single-interface device, an interface declaration lands on the device.
        let single = Self.usb(pid: 0x0011, interfaces: [Self.interface(0, ClassTriple(0xff, 0x42, 0))],
                              firmware: [FirmwareGUID(guid: Self.declaredGUID, interfaceNumber: 0, source: .msOS20)])
        #expect(classifier.classify(single).map { $0.classes.map(\.guid) }
                == [[WellKnownClass.usbDevice.guid, Self.declaredGUID]])
    }

    @Test func hidByUsageBusAndCatalog() throws {
        let combo = DeviceSnapshot(
            kind: .hid, portChain: PortChain(bus: 1, ports: [2]), vendorID: 0x1209, productID: 0x0001,
            serialNumber: "SER-0001",
            hid: HIDProperties(usages: [.keyboard, .mouse, HIDUsage(page: 0xff00, usage: 1)], interfaceNumber: 0,
                               busType: .usb),
            devnode: "/dev/hidraw0")
        let instances = classifier.classify(combo)
        try #require(instances.count == 1)
        let hid = instances[0]
        #expect(hid.identity.kind == .hid)
        #expect(hid.classes.map(\.name) == ["hid", "keyboard", "mouse", "vendor-device"])
        #expect(hid.memberships[0].symbolicLink.rawValue
                == "hid#vid_1209&pid_0001&mi_00#SER-0001#{4d1e55b2-f16f-11cf-88cb-001111000030}")
        #expect(hid.identity.location == "1-2")

        let uhid = DeviceSnapshot(
            kind: .hid, vendorID: 0x1209, productID: 0x0001,
            hid: HIDProperties(usages: [.mouse], busType: .virtual, physicalLocation: "lab/uhid#0"),
            devnode: "/dev/hidraw3")
        let virtual = try #require(classifier.classify(uhid).first)
        #expect(virtual.classes.map(\.name) == ["hid", "mouse"])
        #expect(virtual.memberships[0].symbolicLink.rawValue
                == "hid#vid_1209&pid_0001&bus_06#@lab%2Fuhid%230#{4d1e55b2-f16f-11cf-88cb-001111000030}")
        #expect(virtual.identity.portChain == nil)

        // A USB device rule does not make the HID node a member; a HID rule does not touch the USB device.
        let usbOfSameDevice = classifier.classify(Self.usb(pid: 0x0001, interfaces: [Self.interface(0, ClassTriple(3, 1, 1))]))
        #expect(usbOfSameDevice[0].classes.map(\.name) == ["usb-device", "vendor-device"])
        let plainHID = DeviceSnapshot(kind: .hid, vendorID: 0x1209, productID: 0x0002,
                                      hid: HIDProperties(usages: [.keyboard], interfaceNumber: 1, busType: .usb))
        #expect(classifier.classify(plainHID)[0].classes.map(\.name) == ["hid", "keyboard"])
    }

    @Test func renamedWellKnownClassKeepsItsFixedRule() throws {
        var catalog = ClassCatalog.builtIn
        catalog.add(ClassDefinition(interfaceClass: InterfaceClass(
            guid: WellKnownClass.hid.guid, name: "human-input", description: "",
            origin: .file(path: "u.conf", line: 1))))
        let snapshot = DeviceSnapshot(kind: .hid, vendorID: 1, productID: 2, hid: HIDProperties(busType: .i2c))
        let instance = try #require(Classifier.classify(snapshot, catalog: catalog).first)
        #expect(instance.classes.map(\.name) == ["human-input"])
        #expect(instance.classes[0].origin == .file(path: "u.conf", line: 1))
    }

    @Test func deterministicAndDeduplicated() {
        let snapshot = Self.usb(pid: 0x0001, interfaces: [Self.interface(0, ClassTriple(0xff, 0, 0))], firmware: [
            FirmwareGUID(guid: Self.vendorGUID, source: .msOS20), FirmwareGUID(guid: Self.vendorGUID, source: .msOS10),
        ])
        let first = classifier.classify(snapshot)
        #expect(first == classifier.classify(snapshot))
        #expect(first[0].classes.map(\.guid) == [WellKnownClass.usbDevice.guid, Self.vendorGUID, Self.bulkGUID])
        #expect(Set(first[0].memberships.map(\.symbolicLink)).count == first[0].memberships.count)
    }

    @Test func snapshotsAndInstancesAreCodable() throws {
        let snapshot = Self.usb(pid: 0x0001, interfaces: [Self.interface(0, ClassTriple(0xff, 0, 0))],
                                firmware: [FirmwareGUID(guid: Self.declaredGUID, interfaceNumber: 0, source: .msOS20)])
        var hidSnapshot = DeviceSnapshot(kind: .hid, vendorID: 1, productID: 2, serialNumber: "",
                                         hid: HIDProperties(usages: [.mouse], reportDescriptor: [5, 1, 9, 2],
                                                            busType: BusType(rawValue: 0x1c)))
        hidSnapshot.access = .denied(reason: "EACCES: /dev/hidraw0 is 0600 root")
        for value in [snapshot, hidSnapshot] {
            let data = try JSONEncoder().encode(value)
            #expect(try JSONDecoder().decode(DeviceSnapshot.self, from: data) == value)
        }
        let instances = classifier.classify(snapshot)
        let data = try JSONEncoder().encode(instances)
        #expect(try JSONDecoder().decode([Instance].self, from: data) == instances)
        #expect(String(decoding: try JSONEncoder().encode(hidSnapshot.hid?.busType), as: UTF8.self) == "\"spi\"")
    }
}

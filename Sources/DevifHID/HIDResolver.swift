// Builds the snapshot of one hidraw node from sysfs, the node and (where its
// enumeration is safe, see hidapiEnumerationIsSafe) hidapi.
import CHIDAPI
import DevifCore
import DevifLinux
import Glibc

enum HIDResolver {
    enum Outcome {
        /// Everything is known.
        case ready(DeviceSnapshot)
        /// Its HID device's uevent is unreadable, or hidapi (where it is
        /// consulted) does not list the node yet; `partial` is what sysfs gave.
        case notYet(partial: DeviceSnapshot)
    }

    /// The report descriptor is read up to this size (HID_MAX_DESCRIPTOR_SIZE).
    static let maximumDescriptorBytes = 4096

    /// What sysfs and the node say about one hidraw node: everything the
    /// snapshot needs except hidapi's answer, which one enumeration gives for
    /// several nodes at once (`PendingNodes`).
    struct NodeFacts {
        var syspath: String
        var devnode: String?
        /// The HID device's uevent; nil while it cannot be read (being made or leaving).
        var hidEvent: Uevent?
        var descriptorBytes: [UInt8] = []
        var usb: USBParent?
        var access: AccessState = .unknown

        var kernelID: KernelHIDID? { hidEvent?["HID_ID"].flatMap(KernelHIDID.init(parsing:)) }

        /// Whether the node waits for hidapi's entry before it is ready, where
        /// hidapi is consulted: its sysfs facts are complete and hidapi lists
        /// devices on its bus.
        var awaitsHIDAPI: Bool {
            guard hidEvent != nil, devnode != nil else { return false }
            return HIDResolver.hidapiLists(kernelID?.bus ?? (usb != nil ? .usb : BusType(rawValue: 0)))
        }
    }

    /// Reads the node's facts from sysfs; nil when the node is gone.
    static func read(syspath: String, devnode knownDevnode: String?) -> NodeFacts? {
        guard let hidDirectory = Sysfs.canonical(syspath + "/device") else { return nil }
        let devnode = knownDevnode ?? Sysfs.uevent(of: syspath)?.devtmpfsNode
        let facts = NodeFacts(
            syspath: syspath,
            devnode: devnode,
            hidEvent: Sysfs.uevent(of: hidDirectory),
            descriptorBytes: (try? Sysfs.read(hidDirectory + "/report_descriptor", limit: maximumDescriptorBytes)) ?? [],
            usb: USBParent(hidDirectory: hidDirectory),
            access: devnode.map(accessState(of:)) ?? .unknown)
        // Read while it left? The kernel removes the hidraw node before its
        // HID device and before the USB interface and device above it, so
        // a node still in sysfs now means everything above was readable
        // while it was read; otherwise an attribute missing above (a serial)
        // may only mean it had gone, and the device would be misnamed (seen
        // in a storm: a gadget's hidraw node named by port chain).
        guard Sysfs.exists(syspath) else { return nil }
        return facts
    }

    /// The snapshot from a node's facts and hidapi's entry for it. With
    /// `hidapiConsulted` (hidapi 0.15.0 and later), a node hidapi should list
    /// but `api` is nil for is not ready yet.
    static func outcome(of facts: NodeFacts, api: HIDAPIInfo?, hidapiConsulted: Bool) -> Outcome {
        let hidEvent = facts.hidEvent
        let kernelID = facts.kernelID
        let devnode = facts.devnode
        let usb = facts.usb
        let descriptor = HIDReportDescriptor.parse(facts.descriptorBytes)

        let bus = kernelID?.bus ?? api.map { busType(from: $0.busType) } ?? (usb != nil ? .usb : BusType(rawValue: 0))
        var usages = descriptor.topLevelUsages
        if usages.isEmpty, let api {
            // Unreadable or usage-less descriptor: hidapi's first pair is all we have.
            usages = api.usages.prefix(1).filter { $0.page != 0 || $0.usage != 0 }.map { HIDUsage(page: $0.page, usage: $0.usage) }
        }
        let interfaceNumber = usb?.interfaceNumber
            ?? api.flatMap { (0...255).contains($0.interfaceNumber) ? UInt8($0.interfaceNumber) : nil }

        let uniq = hidEvent?["HID_UNIQ"].flatMap { $0.isEmpty ? nil : $0 }
        // Strings: the USB device's sysfs attributes when on USB (complete,
        // UTF-8; hidapi truncates the serial to the kernel's 64-byte HID_UNIQ
        // and loses non-ASCII text to mbstowcs in the C locale), else hidapi's,
        // else the kernel's HID_NAME / HID_UNIQ.
        let manufacturer = usb?.manufacturer ?? nonEmpty(api?.manufacturer)
        let product = usb?.product ?? nonEmpty(api?.product) ?? hidEvent?["HID_NAME"]
        // On USB the attribute exists exactly when the device has an
        // iSerialNumber, so nil here means "no serial", not "unknown".
        let serial: String? = if let usb { usb.serial } else { uniq ?? nonEmpty(api?.serialNumber) }

        let snapshot = DeviceSnapshot(
            kind: .hid,
            portChain: usb?.portChain,
            remote: usb?.remote,
            deviceAddress: usb?.deviceAddress,
            vendorID: kernelID?.vendorID ?? api?.vendorID ?? usb?.vendorID ?? 0,
            productID: kernelID?.productID ?? api?.productID ?? usb?.productID ?? 0,
            bcdDevice: usb?.bcdDevice ?? (usb != nil ? api?.releaseNumber : nil),
            deviceClass: usb?.deviceClass,
            manufacturer: manufacturer,
            product: product,
            serialNumber: serial,
            hid: HIDProperties(usages: usages, reportDescriptor: facts.descriptorBytes, interfaceNumber: interfaceNumber,
                               busType: bus, physicalLocation: hidEvent?["HID_PHYS"]),
            devnode: devnode,
            sysfsPath: facts.syspath,
            access: facts.access)

        // Not ready while the HID device's uevent cannot be read (it is being
        // made or is leaving), while hidapi, where it is consulted, does
        // not list the node yet, or while a USB/IP import's record is not
        // written yet (its name would be the vhci port's).
        if hidEvent == nil || (api == nil && hidapiConsulted && facts.awaitsHIDAPI) || usb?.remoteUnknown == true {
            return .notYet(partial: snapshot)
        }
        return .ready(snapshot)
    }

    /// Whether hidapi (hidraw) lists devices on this bus at all.
    static func hidapiLists(_ bus: BusType) -> Bool {
        bus == .usb || bus == .bluetooth || bus == .i2c || bus == .spi
    }

    static func busType(from type: hid_bus_type) -> BusType {
        switch type {
        case HID_API_BUS_USB: .usb
        case HID_API_BUS_BLUETOOTH: .bluetooth
        case HID_API_BUS_I2C: .i2c
        case HID_API_BUS_SPI: .spi
        default: BusType(rawValue: 0)
        }
    }

    private static func nonEmpty(_ text: String?) -> String? {
        guard let text, !text.isEmpty else { return nil }
        return text
    }

    /// Whether the node opens read-write; on denial, its mode and owner and what fixes it.
    static func accessState(of devnode: String) -> AccessState {
        guard let denial = NodeAccess.denial(devnode) else { return .ok }
        return .denied(reason: denial + "; a udev rule granting access fixes this (devif can generate one)")
    }
}

/// The USB device (and interface) a hidraw node hangs off, from sysfs.
struct USBParent {
    var portChain: PortChain?
    /// Where an imported (USB/IP) device really is; nil for a local one.
    var remote: RemoteOrigin?
    /// On a vhci bus but no attach record names its port (yet).
    var remoteUnknown = false
    var deviceAddress: UInt8?
    var vendorID: UInt16?
    var productID: UInt16?
    var bcdDevice: UInt16?
    var deviceClass: ClassTriple?
    var manufacturer: String?
    var product: String?
    /// Nil when the device has no iSerialNumber (no `serial` attribute).
    var serial: String?
    var interfaceNumber: UInt8?

    /// Nil when the HID device is not below a USB device (uhid, Bluetooth, I2C).
    init?(hidDirectory: String) {
        guard let device = Sysfs.ancestor(of: hidDirectory, subsystem: "usb", devtype: "usb_device") else { return nil }
        // sysfs names a USB device by its port chain (`1-1.4`).
        portChain = PortChain(parsing: Sysfs.name(of: device))
        if VHCI.isImported(sysfsPath: device) {
            remote = VHCI.origin(ofUSBDevice: device)
            remoteUnknown = remote == nil
        }
        deviceAddress = Sysfs.string(device + "/devnum", limit: 16).flatMap { UInt8($0) }
        vendorID = Sysfs.hex(device + "/idVendor").flatMap { UInt16(exactly: $0) }
        productID = Sysfs.hex(device + "/idProduct").flatMap { UInt16(exactly: $0) }
        bcdDevice = Sysfs.hex(device + "/bcdDevice").flatMap { UInt16(exactly: $0) }
        if let c = Sysfs.hex(device + "/bDeviceClass").flatMap({ UInt8(exactly: $0) }),
           let s = Sysfs.hex(device + "/bDeviceSubClass").flatMap({ UInt8(exactly: $0) }),
           let p = Sysfs.hex(device + "/bDeviceProtocol").flatMap({ UInt8(exactly: $0) }) {
            deviceClass = ClassTriple(c, s, p)
        }
        manufacturer = Sysfs.string(device + "/manufacturer")
        product = Sysfs.string(device + "/product")
        serial = Sysfs.string(device + "/serial")
        if let interface = Sysfs.ancestor(of: hidDirectory, subsystem: "usb", devtype: "usb_interface") {
            interfaceNumber = Sysfs.hex(interface + "/bInterfaceNumber").flatMap { UInt8(exactly: $0) }
        }
    }
}

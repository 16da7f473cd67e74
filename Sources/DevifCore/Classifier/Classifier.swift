/// Snapshot + catalog -> instances and their classes. Pure: no I/O, no state.
///
/// **USB** (one snapshot per device): one instance for the device, a member of
/// `usb-device` always, of `usb-hub` when bDeviceClass is 9, and of every class
/// with a matching device rule (see ``MatchRule/target``). If the active
/// configuration has more than one interface (distinct bInterfaceNumbers;
/// alternate settings do not count) the device is *composite* and each
/// interface is an instance too, a member of the classes whose interface rules
/// match it (alternate setting 0's descriptor). On a device with one interface,
/// interface rule matches go to the device instance.
///
/// **HID** (one snapshot per hidraw node): one instance, a member of `hid`
/// always, `keyboard` when a top-level collection is usage 1/6, `mouse` for
/// 1/2, and of every class with a matching HID rule.
///
/// **Firmware GUIDs** (MS OS descriptors): a GUID declared for an interface
/// makes that interface's instance (or, if there is none, the device's) a
/// member of that class; one declared for the whole device, the device's
/// instance (and a HID snapshot's own). A GUID no catalog entry defines is a
/// class named ``InterfaceClass/firmwareDeclaredName``.
public struct Classifier: Sendable {
    /// The classes snapshots are matched against.
    public var catalog: ClassCatalog

    /// A classifier for the classes of `catalog`.
    public init(catalog: ClassCatalog) {
        self.catalog = catalog
    }

    /// The instances of `snapshot`: the device's first, then its interfaces in
    /// ascending interface number. Interface instances with no class are included
    /// (they have no links; callers that only want members can filter).
    public func classify(_ snapshot: DeviceSnapshot) -> [Instance] {
        switch snapshot.kind {
        case .usb: classifyUSB(snapshot)
        case .hid: [classifyHID(snapshot)]
        }
    }

    /// ``classify(_:)`` with a given catalog.
    public static func classify(_ snapshot: DeviceSnapshot, catalog: ClassCatalog) -> [Instance] {
        Classifier(catalog: catalog).classify(snapshot)
    }

    private func classifyUSB(_ snapshot: DeviceSnapshot) -> [Instance] {
        let location = snapshot.remote?.location ?? snapshot.portChain?.description ?? ""
        let deviceWideGUIDs = Set(snapshot.firmwareGUIDs.filter { $0.interfaceNumber == nil }.map(\.guid))
        let deviceSubject = MatchSubject(kind: .usb, vendorID: snapshot.vendorID, productID: snapshot.productID,
                                         bcdDevice: snapshot.bcdDevice, deviceClass: snapshot.deviceClass,
                                         firmwareGUIDs: deviceWideGUIDs)
        var deviceClasses: Set<GUID> = [WellKnownClass.usbDevice.guid]
        if snapshot.deviceClass?.classCode == 9 { deviceClasses.insert(WellKnownClass.usbHub.guid) }
        deviceClasses.formUnion(matchingClasses(.usbDevice, deviceSubject))
        deviceClasses.formUnion(deviceWideGUIDs)

        let configuration = snapshot.activeConfiguration
        let numbers = configuration?.interfaceNumbers ?? []
        let composite = numbers.count > 1
        var interfaceInstances: [Instance] = []
        var deviceInterfaceString: String?
        for number in numbers {
            let setting = configuration?.defaultSetting(of: number)
            let declared = Set(snapshot.firmwareGUIDs.filter { $0.interfaceNumber == number }.map(\.guid))
            var subject = deviceSubject
            subject.interfaceNumber = number
            subject.interfaceClass = setting?.interfaceClass
            subject.firmwareGUIDs = declared
            let classes = matchingClasses(.usbInterface, subject).union(declared)
            guard composite else {
                deviceClasses.formUnion(classes)
                deviceInterfaceString = setting?.interfaceString
                continue
            }
            let identity = InstanceIdentity(kind: .usb, vendorID: snapshot.vendorID, productID: snapshot.productID,
                                            interfaceNumber: number, busType: .usb,
                                            serialNumber: snapshot.serialNumber, location: location)
            interfaceInstances.append(Instance(
                identity: identity, memberships: memberships(classes, identity), devnode: snapshot.devnode,
                sysfsPath: snapshot.sysfsPath, manufacturer: snapshot.manufacturer, product: snapshot.product,
                interfaceString: setting?.interfaceString, usbClass: setting?.interfaceClass, access: snapshot.access))
        }
        // Declared for an interface that has no instance of its own: the device's.
        let placed = composite ? Set(numbers) : []
        for declared in snapshot.firmwareGUIDs {
            if let number = declared.interfaceNumber, !placed.contains(number) { deviceClasses.insert(declared.guid) }
        }

        let identity = InstanceIdentity(kind: .usb, vendorID: snapshot.vendorID, productID: snapshot.productID,
                                        interfaceNumber: nil, busType: .usb,
                                        serialNumber: snapshot.serialNumber, location: location)
        let device = Instance(
            identity: identity, memberships: memberships(deviceClasses, identity), devnode: snapshot.devnode,
            sysfsPath: snapshot.sysfsPath, manufacturer: snapshot.manufacturer, product: snapshot.product,
            interfaceString: deviceInterfaceString, usbClass: snapshot.deviceClass, access: snapshot.access)
        return [device] + interfaceInstances
    }

    private func classifyHID(_ snapshot: DeviceSnapshot) -> Instance {
        let hid = snapshot.hid ?? HIDProperties(busType: snapshot.portChain != nil ? .usb : BusType(rawValue: 0))
        let onUSB = hid.busType == .usb
        let location = onUSB
            ? snapshot.remote?.location ?? snapshot.portChain?.description ?? hid.physicalLocation ?? ""
            : hid.physicalLocation ?? ""
        let declared = Set(snapshot.firmwareGUIDs.filter {
            $0.interfaceNumber == nil || $0.interfaceNumber == hid.interfaceNumber
        }.map(\.guid))
        let subject = MatchSubject(kind: .hid, vendorID: snapshot.vendorID, productID: snapshot.productID,
                                   bcdDevice: snapshot.bcdDevice, deviceClass: snapshot.deviceClass,
                                   interfaceNumber: hid.interfaceNumber, interfaceClass: nil,
                                   hidUsages: hid.usages, hidBus: hid.busType, firmwareGUIDs: declared)
        var classes: Set<GUID> = [WellKnownClass.hid.guid]
        if hid.usages.contains(.keyboard) { classes.insert(WellKnownClass.keyboard.guid) }
        if hid.usages.contains(.mouse) { classes.insert(WellKnownClass.mouse.guid) }
        classes.formUnion(matchingClasses(.hid, subject))
        classes.formUnion(declared)
        let identity = InstanceIdentity(kind: .hid, vendorID: snapshot.vendorID, productID: snapshot.productID,
                                        interfaceNumber: onUSB ? hid.interfaceNumber : nil, busType: hid.busType,
                                        serialNumber: snapshot.serialNumber, location: location)
        return Instance(identity: identity, memberships: memberships(classes, identity), devnode: snapshot.devnode,
                        sysfsPath: snapshot.sysfsPath, manufacturer: snapshot.manufacturer, product: snapshot.product,
                        hidUsages: hid.usages, access: snapshot.access)
    }

    /// The catalog classes with a rule for `target` that matches `subject`.
    private func matchingClasses(_ target: MatchRule.Target, _ subject: MatchSubject) -> Set<GUID> {
        var found = Set<GUID>()
        for definition in catalog.definitions
        where definition.rules.contains(where: { $0.target == target && $0.matches(subject, classGUID: definition.guid) }) {
            found.insert(definition.guid)
        }
        return found
    }

    /// Memberships in the fixed order: well-known classes first, then by GUID.
    private func memberships(_ guids: Set<GUID>, _ identity: InstanceIdentity) -> [ClassMembership] {
        let wellKnown = WellKnownClass.all.map(\.guid)
        let ordered = wellKnown.filter(guids.contains) + guids.subtracting(wellKnown).sorted()
        return ordered.map { guid in
            ClassMembership(interfaceClass: catalog.interfaceClass(for: guid),
                            symbolicLink: identity.symbolicLink(for: guid))
        }
    }
}

/// One `match = …` line of a catalog class: criteria that must all hold.
///
/// A rule applies to one kind of subject, decided by its criteria:
/// - **HID** (each hidraw node) if it has `kind=hid` or any `hid-…` criterion;
/// - **USB interface** if it has `interface`, `usb-class`, `usb-subclass` or
///   `usb-protocol` (matched against each interface of the active
///   configuration, alternate setting 0; the instance it adds to is the
///   interface's own on a composite device, the device's otherwise);
/// - **USB device** otherwise.
public struct MatchRule: Hashable, Sendable, Codable, CustomStringConvertible {
    /// `kind=usb|hid`: only to make a rule's target explicit (`kind=hid vid=1209`).
    public var kind: DeviceKind?
    /// `vid=`.
    public var vendorID: UInt16?
    /// `pid=`.
    public var productID: UInt16?
    /// `bcd-device=`: bcdDevice, exactly.
    public var bcdDevice: UInt16?
    /// `device-class=`, `device-subclass=`, `device-protocol=`: the device descriptor's triple.
    public var deviceClass: UInt8?
    /// `device-subclass=`: bDeviceSubClass.
    public var deviceSubclass: UInt8?
    /// `device-protocol=`: bDeviceProtocol.
    public var deviceProtocol: UInt8?
    /// `interface=`: bInterfaceNumber (USB interface rules; the HID's interface for HID rules).
    public var interfaceNumber: UInt8?
    /// `usb-class=`, `usb-subclass=`, `usb-protocol=`: the interface descriptor's triple.
    public var interfaceClass: UInt8?
    /// `usb-subclass=`: bInterfaceSubClass.
    public var interfaceSubclass: UInt8?
    /// `usb-protocol=`: bInterfaceProtocol.
    public var interfaceProtocol: UInt8?
    /// `hid-usage-page=`, `hid-usage=`: a top-level collection with this usage (both must hold for the same one).
    public var hidUsagePage: UInt16?
    /// `hid-usage=`: the usage of that top-level collection.
    public var hidUsage: UInt16?
    /// `hid-bus=`: the HID bus.
    public var hidBus: BusType?
    /// `firmware-guid` (this class's own GUID) or `firmware-guid={…}`: the
    /// subject declares that GUID in its MS OS descriptors.
    public var firmwareGUID: FirmwareGUIDCriterion?

    /// A rule with no criterion yet (the parser fills it in; an empty rule is
    /// refused when a catalog is read).
    public init() {}

    /// What a rule can declare it needs from firmware.
    public enum FirmwareGUIDCriterion: Hashable, Sendable, Codable {
        /// The GUID of the class the rule belongs to.
        case ownClass
        /// A given GUID.
        case guid(GUID)
    }

    /// What a rule is matched against.
    public enum Target: String, Hashable, Sendable, Codable {
        /// `usbDevice`: a whole USB device; `usbInterface`: each interface of the
        /// active configuration; `hid`: each hidraw node.
        case usbDevice = "usb-device", usbInterface = "usb-interface", hid
    }

    /// Which subjects this rule is tested on (see the type's documentation).
    public var target: Target {
        if kind == .hid || hidUsagePage != nil || hidUsage != nil || hidBus != nil { return .hid }
        if interfaceNumber != nil || interfaceClass != nil || interfaceSubclass != nil || interfaceProtocol != nil {
            return .usbInterface
        }
        return .usbDevice
    }

    /// The rule in catalog syntax, criteria in a fixed order.
    public var description: String {
        var parts: [String] = []
        if let kind { parts.append("kind=\(kind)") }
        if let vendorID { parts.append("vid=\(hex4(vendorID))") }
        if let productID { parts.append("pid=\(hex4(productID))") }
        if let bcdDevice { parts.append("bcd-device=\(hex4(bcdDevice))") }
        if let deviceClass { parts.append("device-class=\(hex2(deviceClass))") }
        if let deviceSubclass { parts.append("device-subclass=\(hex2(deviceSubclass))") }
        if let deviceProtocol { parts.append("device-protocol=\(hex2(deviceProtocol))") }
        if let interfaceNumber { parts.append("interface=\(hex2(interfaceNumber))") }
        if let interfaceClass { parts.append("usb-class=\(hex2(interfaceClass))") }
        if let interfaceSubclass { parts.append("usb-subclass=\(hex2(interfaceSubclass))") }
        if let interfaceProtocol { parts.append("usb-protocol=\(hex2(interfaceProtocol))") }
        if let hidUsagePage { parts.append("hid-usage-page=\(hex4(hidUsagePage))") }
        if let hidUsage { parts.append("hid-usage=\(hex4(hidUsage))") }
        if let hidBus { parts.append("hid-bus=\(hidBus)") }
        switch firmwareGUID {
        case .ownClass?: parts.append("firmware-guid")
        case .guid(let guid)?: parts.append("firmware-guid=\(guid)")
        case nil: break
        }
        return parts.joined(separator: " ")
    }
}

/// The facts a rule is tested against; built by the classifier.
struct MatchSubject {
    var kind: DeviceKind
    var vendorID: UInt16
    var productID: UInt16
    var bcdDevice: UInt16?
    var deviceClass: ClassTriple?
    var interfaceNumber: UInt8?
    var interfaceClass: ClassTriple?
    var hidUsages: [HIDUsage] = []
    var hidBus: BusType?
    var firmwareGUIDs: Set<GUID>
}

extension MatchRule {
    /// Whether every criterion holds for `subject` (the class's own GUID is
    /// `classGUID`, for a bare `firmware-guid`). The target is checked by the caller.
    func matches(_ subject: MatchSubject, classGUID: GUID) -> Bool {
        if let kind, kind != subject.kind { return false }
        if let vendorID, vendorID != subject.vendorID { return false }
        if let productID, productID != subject.productID { return false }
        if let bcdDevice, bcdDevice != subject.bcdDevice { return false }
        if let deviceClass, deviceClass != subject.deviceClass?.classCode { return false }
        if let deviceSubclass, deviceSubclass != subject.deviceClass?.subclass { return false }
        if let deviceProtocol, deviceProtocol != subject.deviceClass?.protocolCode { return false }
        if let interfaceNumber, interfaceNumber != subject.interfaceNumber { return false }
        if let interfaceClass, interfaceClass != subject.interfaceClass?.classCode { return false }
        if let interfaceSubclass, interfaceSubclass != subject.interfaceClass?.subclass { return false }
        if let interfaceProtocol, interfaceProtocol != subject.interfaceClass?.protocolCode { return false }
        if hidUsagePage != nil || hidUsage != nil {
            let found = subject.hidUsages.contains { usage in
                (hidUsagePage.map { $0 == usage.page } ?? true) && (hidUsage.map { $0 == usage.usage } ?? true)
            }
            if !found { return false }
        }
        if let hidBus, hidBus != subject.hidBus { return false }
        switch firmwareGUID {
        case .ownClass?: if !subject.firmwareGUIDs.contains(classGUID) { return false }
        case .guid(let guid)?: if !subject.firmwareGUIDs.contains(guid) { return false }
        case nil: break
        }
        return true
    }
}

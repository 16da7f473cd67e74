/// What tells one instance apart from every other: the parts its symbolic
/// links are made of (without the class GUID).
///
/// Equality compares ``serialNumber`` and ``location`` byte for byte (UTF-8),
/// not by Swift's Unicode canonical equivalence, because links are made of
/// those bytes: two serials that merely look alike are two devices.
public struct InstanceIdentity: Hashable, Sendable, Codable, CustomStringConvertible {
    /// A USB device/interface, or a hidraw node.
    public var kind: DeviceKind
    /// idVendor (for HID not on USB, the kernel's `HID_ID` vendor).
    public var vendorID: UInt16
    /// idProduct (for HID not on USB, the kernel's `HID_ID` product).
    public var productID: UInt16
    /// The USB interface for an interface instance, or a HID device's USB
    /// interface; nil for a whole device or HID not on USB.
    public var interfaceNumber: UInt8?
    /// `.usb` for USB devices and HID devices on USB; the HID bus otherwise.
    public var busType: BusType
    /// The raw serial number; nil when the device has none (not the same as empty).
    public var serialNumber: String?
    /// Where it is attached: the port chain text (`1-1.4`) on USB, the
    /// kernel's phys string for HID not on USB (may be empty). Used in links
    /// when there is no serial, or when two present devices share one.
    public var location: String

    /// An identity from its parts (the ``Classifier`` makes these from snapshots).
    public init(kind: DeviceKind, vendorID: UInt16, productID: UInt16, interfaceNumber: UInt8? = nil,
                busType: BusType = .usb, serialNumber: String?, location: String) {
        self.kind = kind
        self.vendorID = vendorID
        self.productID = productID
        self.interfaceNumber = interfaceNumber
        self.busType = busType
        self.serialNumber = serialNumber
        self.location = location
    }

    /// The USB port chain, when attached via USB and the location is one.
    public var portChain: PortChain? {
        busType == .usb ? PortChain(parsing: location) : nil
    }

    /// The symbolic link of this instance in class `classGUID` (see LINK-FORMAT.md).
    /// The location is part of it when there is no serial, or when
    /// `includeLocation` is set (two present devices with the same serial);
    /// `ordinal` tells apart present instances whose serial and location
    /// are both the same (see ``SymbolicLink/ordinal``).
    public func symbolicLink(for classGUID: GUID, includeLocation: Bool = false, ordinal: Int? = nil) -> SymbolicLink {
        SymbolicLink(identity: self, classGUID: classGUID, includeLocation: includeLocation, ordinal: ordinal)
    }

    /// A short human form, e.g. `usb 1209:0002 mi 01 serial "SER-0001" at 1-1.4`.
    public var description: String {
        var text = "\(kind) \(hex4(vendorID)):\(hex4(productID))"
        if let interfaceNumber { text += " mi \(hex2(interfaceNumber))" }
        if busType != .usb { text += " bus \(busType)" }
        if let serialNumber { text += " serial \(quotedForMessage(serialNumber))" }
        return text + " at \(quotedForMessage(location))"
    }

    public static func == (lhs: InstanceIdentity, rhs: InstanceIdentity) -> Bool {
        lhs.kind == rhs.kind && lhs.vendorID == rhs.vendorID && lhs.productID == rhs.productID
            && lhs.interfaceNumber == rhs.interfaceNumber && lhs.busType == rhs.busType
            && sameBytes(lhs.serialNumber, rhs.serialNumber) && lhs.location.utf8.elementsEqual(rhs.location.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(kind)
        hasher.combine(vendorID)
        hasher.combine(productID)
        hasher.combine(interfaceNumber)
        hasher.combine(busType)
        hasher.combine(serialNumber == nil)
        for byte in serialNumber?.utf8 ?? "".utf8 { hasher.combine(byte) }
        hasher.combine(0xFFFF as UInt16) // separator: a byte can't be 0xFFFF
        for byte in location.utf8 { hasher.combine(byte) }
    }
}

private func sameBytes(_ lhs: String?, _ rhs: String?) -> Bool {
    switch (lhs, rhs) {
    case (nil, nil): true
    case let (l?, r?): l.utf8.elementsEqual(r.utf8)
    default: false
    }
}

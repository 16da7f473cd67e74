/// One `probe = …` line of a catalog's `[ms-os-1.0]` section: the devices
/// whose MS OS 1.0 string descriptor (index 0xEE) devif may ask for.
///
/// Asking for string 0xEE upsets some devices (they stall, reset or hang
/// their control endpoint), so devif asks only devices a catalog names, and
/// asks each model once (the answer is remembered in the registry, see
/// ``MSOS10ProbeMemory``). A missing criterion matches any value;
/// ``any`` matches every device.
public struct MSOS10ProbeRule: Hashable, Sendable, Codable, CustomStringConvertible {
    /// `vid=`: idVendor.
    public var vendorID: UInt16?
    /// `pid=`: idProduct.
    public var productID: UInt16?
    /// `bcd-device=`: bcdDevice, exactly.
    public var bcdDevice: UInt16?

    /// A rule with these criteria; one left nil matches any value.
    public init(vendorID: UInt16? = nil, productID: UInt16? = nil, bcdDevice: UInt16? = nil) {
        self.vendorID = vendorID
        self.productID = productID
        self.bcdDevice = bcdDevice
    }

    /// `probe = any`: every USB device.
    public static let any = MSOS10ProbeRule()

    /// Whether a device with these ids may be asked.
    public func allows(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16?) -> Bool {
        if let v = self.vendorID, v != vendorID { return false }
        if let p = self.productID, p != productID { return false }
        if let b = self.bcdDevice, b != bcdDevice { return false }
        return true
    }

    /// The rule in catalog syntax (`vid=1209 pid=0001`, or `any`).
    public var description: String {
        var parts: [String] = []
        if let vendorID { parts.append("vid=\(hex4(vendorID))") }
        if let productID { parts.append("pid=\(hex4(productID))") }
        if let bcdDevice { parts.append("bcd-device=\(hex4(bcdDevice))") }
        return parts.isEmpty ? "any" : parts.joined(separator: " ")
    }
}

extension Array where Element == MSOS10ProbeRule {
    /// Whether any rule allows asking this device for string 0xEE.
    public func allowMSOS10Probe(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16?) -> Bool {
        contains { $0.allows(vendorID: vendorID, productID: productID, bcdDevice: bcdDevice) }
    }
}

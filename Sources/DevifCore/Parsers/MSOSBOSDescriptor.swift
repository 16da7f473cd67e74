/// A parsed Binary device Object Store descriptor (USB 3.2 section 9.6.2) with
/// its device capabilities, and the MS OS 2.0 descriptor set information from
/// the Microsoft OS 2.0 platform capability.
///
/// Error model: partial result plus ``issues`` (``parse(_:)``) or the first
/// issue thrown (``init(validating:)``), as for ``MSOS20DescriptorSet``. A
/// capability with a zero, too small or overrunning bLength stops the parse
/// (nothing after it can be located); an MS OS 2.0 capability whose data is
/// not a whole number of 8-byte set infos keeps the whole ones.
public struct BOSDescriptor: Hashable, Sendable {
    /// One device capability descriptor.
    public struct DeviceCapability: Hashable, Sendable {
        /// bDevCapabilityType (0x05 platform).
        public var type: UInt8
        /// The bytes after bDevCapabilityType.
        public var data: [UInt8]
        /// Offset of its bLength in the BOS descriptor.
        public var offset: Int

        /// A capability from its parts.
        public init(type: UInt8, data: [UInt8], offset: Int) {
            self.type = type
            self.data = data
            self.offset = offset
        }

        /// For a platform capability (type 5): the PlatformCapabilityUUID,
        /// converted from its Windows mixed-endian wire form (first three
        /// fields little-endian) to text order.
        public var platformCapabilityUUID: GUID? {
            guard type == BOSDescriptor.platformCapabilityType, data.count >= 17 else { return nil }
            return GUID(windowsBytes: data[1 ..< 17])
        }
    }

    /// One MS OS 2.0 descriptor set the device offers (a Descriptor Set
    /// Information structure).
    public struct MSOS20SetInfo: Hashable, Sendable {
        /// dwWindowsVersion: the lowest Windows version this set is for (e.g.
        /// 0x06030000 for Windows 8.1).
        public var windowsVersion: UInt32
        /// wMSOSDescriptorSetTotalLength: the wLength to request the set with.
        public var descriptorSetTotalLength: UInt16
        /// bMS_VendorCode: the bRequest of the vendor request that fetches
        /// the set (bmRequestType 0xC0, wIndex 7 MS_OS_20_DESCRIPTOR_INDEX).
        public var vendorCode: UInt8
        /// bAltEnumCode: nonzero if the device supports alternate enumeration
        /// (wIndex 8 MS_OS_20_SET_ALT_ENUMERATION, wValue = this code).
        public var altEnumCode: UInt8

        /// A set info from its parts.
        public init(windowsVersion: UInt32, descriptorSetTotalLength: UInt16, vendorCode: UInt8, altEnumCode: UInt8) {
            self.windowsVersion = windowsVersion
            self.descriptorSetTotalLength = descriptorSetTotalLength
            self.vendorCode = vendorCode
            self.altEnumCode = altEnumCode
        }
    }

    /// bDescriptorType of the BOS descriptor.
    public static let descriptorType: UInt8 = 0x0F
    /// bDescriptorType of a device capability descriptor.
    public static let deviceCapabilityDescriptorType: UInt8 = 0x10
    /// bDevCapabilityType of a platform capability.
    public static let platformCapabilityType: UInt8 = 0x05
    /// The MS OS 2.0 platform capability UUID, {d8dd60df-4589-4cc7-9cd2-659d9e648a9f}.
    public static let msOS20PlatformUUID = GUID(high: 0xD8DD_60DF_4589_4CC7, low: 0x9CD2_659D_9E64_8A9F)
    /// Windows 8.1, the version a host emulating current Windows should ask for.
    public static let windows81: UInt32 = 0x0603_0000

    /// wTotalLength of the header.
    public var totalLength: Int
    /// bNumDeviceCaps of the header.
    public var declaredCapabilityCount: Int
    /// The capabilities found, in order.
    public var capabilities: [DeviceCapability]
    /// Every MS OS 2.0 set info of every MS OS 2.0 platform capability, in
    /// order. Use ``msOS20DescriptorSet(forWindowsVersion:)`` to pick one.
    public var msOS20DescriptorSets: [MSOS20SetInfo]
    /// What was wrong, in input order (a fatal issue last: parsing stopped there).
    public var issues: [MSOSDescriptorIssue]

    /// A descriptor from its parts (``parse(_:)`` makes these).
    public init(totalLength: Int, declaredCapabilityCount: Int, capabilities: [DeviceCapability],
                msOS20DescriptorSets: [MSOS20SetInfo], issues: [MSOSDescriptorIssue]) {
        self.totalLength = totalLength
        self.declaredCapabilityCount = declaredCapabilityCount
        self.capabilities = capabilities
        self.msOS20DescriptorSets = msOS20DescriptorSets
        self.issues = issues
    }

    /// The set a host emulating `windowsVersion` should fetch, as Windows
    /// chooses: the one with the highest dwWindowsVersion that is not above
    /// it; nil if every set is for a later Windows (Windows then falls back to
    /// MS OS 1.0 descriptors). Ties keep the first in descriptor order.
    public func msOS20DescriptorSet(forWindowsVersion windowsVersion: UInt32 = windows81) -> MSOS20SetInfo? {
        var best: MSOS20SetInfo?
        for info in msOS20DescriptorSets where info.windowsVersion <= windowsVersion {
            if best.map({ info.windowsVersion > $0.windowsVersion }) ?? true { best = info }
        }
        return best
    }

    /// Parses as much as is well-formed; never fails. Check ``issues``.
    public static func parse(_ bytes: some Collection<UInt8>) -> BOSDescriptor {
        let bytes = Array(bytes)
        var result = BOSDescriptor(totalLength: 0, declaredCapabilityCount: 0, capabilities: [],
                                   msOS20DescriptorSets: [], issues: [])
        func issue(_ offset: Int, _ kind: MSOSDescriptorIssue.Kind) {
            result.issues.append(.init(descriptor: .bos, offset: offset, kind: kind))
        }
        guard bytes.count >= 5 else {
            issue(0, .truncated(needed: 5, available: bytes.count))
            return result
        }
        let headerLength = Int(bytes[0])
        result.totalLength = Int(bytes.le16(2))
        result.declaredCapabilityCount = Int(bytes[4])
        guard bytes[1] == descriptorType else {
            issue(1, .badHeader(field: "bDescriptorType", value: UInt32(bytes[1]), expected: UInt32(descriptorType)))
            return result
        }
        guard headerLength >= 5, headerLength <= result.totalLength else {
            issue(0, .badLength(field: "bLength", value: headerLength, minimum: 5, maximum: max(5, result.totalLength)))
            return result
        }
        let end = min(result.totalLength, bytes.count)
        var offset = headerLength
        while offset < end {
            guard end - offset >= 3 else {
                issue(offset, .truncated(needed: 3, available: end - offset))
                break
            }
            let length = Int(bytes[offset])
            guard length >= 3, length <= end - offset else {
                if length >= 3, end == bytes.count, bytes.count < result.totalLength {
                    issue(offset, .truncated(needed: length, available: end - offset))
                } else {
                    issue(offset, .badLength(field: "capability bLength", value: length, minimum: 3, maximum: end - offset))
                }
                break
            }
            if bytes[offset + 1] != deviceCapabilityDescriptorType {
                // Not a capability: skip it by its length, as hosts do.
                issue(offset + 1, .unexpectedValue(field: "capability bDescriptorType", value: UInt32(bytes[offset + 1]),
                                                   expected: UInt32(deviceCapabilityDescriptorType)))
            } else {
                let capability = DeviceCapability(type: bytes[offset + 2], data: Array(bytes[offset + 3 ..< offset + length]),
                                                  offset: offset)
                result.capabilities.append(capability)
                if capability.platformCapabilityUUID == msOS20PlatformUUID {
                    // After bReserved and the UUID: 8-byte set infos.
                    let infos = capability.data.dropFirst(17)
                    if infos.count % 8 != 0 || infos.isEmpty {
                        issue(offset, .countMismatch(field: "MS OS 2.0 platform capability set infos",
                                                     declared: infos.count / 8 + (infos.count % 8 == 0 ? 0 : 1),
                                                     found: infos.count / 8))
                    }
                    var at = infos.startIndex
                    while infos.endIndex - at >= 8 {
                        let info = Array(infos[at ..< at + 8])
                        result.msOS20DescriptorSets.append(.init(windowsVersion: info.le32(0),
                                                                 descriptorSetTotalLength: info.le16(4),
                                                                 vendorCode: info[6], altEnumCode: info[7]))
                        at += 8
                    }
                }
            }
            offset += length
        }
        if result.issues.last?.kind.isFatal != true {
            if bytes.count < result.totalLength {
                issue(bytes.count, .truncated(needed: result.totalLength, available: bytes.count))
            } else if result.capabilities.count != result.declaredCapabilityCount {
                issue(4, .countMismatch(field: "bNumDeviceCaps", declared: result.declaredCapabilityCount,
                                        found: result.capabilities.count))
            }
        }
        return result
    }

    /// Parses and throws the first issue, if any.
    public init(validating bytes: some Collection<UInt8>) throws(MSOSDescriptorIssue) {
        let result = Self.parse(bytes)
        if let first = result.issues.first { throw first }
        self = result
    }
}

extension GUID {
    /// A GUID from the 16 bytes of Windows' in-memory layout (Data1, Data2 and
    /// Data3 little-endian, Data4 as is), as USB descriptors carry UUIDs.
    /// Nil unless there are exactly 16 bytes.
    init?(windowsBytes: some Collection<UInt8>) {
        let b = Array(windowsBytes)
        guard b.count == 16 else { return nil }
        self.init(bytes: [b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]] + b[8...])
    }
}

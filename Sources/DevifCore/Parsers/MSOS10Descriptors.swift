/// Microsoft OS 1.0 descriptors (Microsoft OS Descriptors 1.0 specification):
/// the OS string descriptor at string index 0xEE, the Extended Compat ID
/// descriptor (wIndex 4, per device) and the Extended Properties descriptor
/// (wIndex 5, per interface).
///
/// Error model: ``MSOS10/vendorCode(fromOSStringDescriptor:)`` answers nil for
/// anything that is not an OS string descriptor (devices answer index 0xEE
/// with garbage or a stall, and that just means "no MS OS 1.0"); the other two
/// return a partial result plus issues (`parse`), or throw the first issue
/// (`init(validating:)`), as ``MSOS20DescriptorSet`` does.
public enum MSOS10 {
    /// The string descriptor index of the OS string descriptor.
    public static let osStringDescriptorIndex: UInt8 = 0xEE
    /// wIndex of the Extended Compat ID request.
    public static let extendedCompatIDIndex: UInt16 = 0x0004
    /// wIndex of the Extended Properties request.
    public static let extendedPropertiesIndex: UInt16 = 0x0005
    /// bcdVersion of both extended descriptors.
    public static let version: UInt16 = 0x0100

    /// The vendor code (bRequest for the extended descriptor requests) from an
    /// OS string descriptor: bLength 0x12, bDescriptorType 3, "MSFT100" in
    /// UTF-16LE, bMS_VendorCode, bPad. Nil when the bytes are anything else.
    public static func vendorCode(fromOSStringDescriptor bytes: some Collection<UInt8>) -> UInt8? {
        let b = Array(bytes.prefix(0x12))
        guard b.count == 0x12, b[0] == 0x12, b[1] == 0x03 else { return nil }
        for (index, character) in "MSFT100".utf8.enumerated()
        where b[2 + 2 * index] != character || b[3 + 2 * index] != 0 { return nil }
        return b[16]
    }

    /// A parsed Extended Compat ID descriptor.
    public struct ExtendedCompatID: Hashable, Sendable {
        /// One function section.
        public struct Function: Hashable, Sendable {
            /// bFirstInterfaceNumber: the function's first interface.
            public var firstInterfaceNumber: UInt8
            /// The function's compatible and sub-compatible IDs.
            public var id: MSOSCompatibleID

            /// A function section from its parts.
            public init(firstInterfaceNumber: UInt8, id: MSOSCompatibleID) {
                self.firstInterfaceNumber = firstInterfaceNumber
                self.id = id
            }
        }

        /// dwLength of the header.
        public var totalLength: Int
        /// bCount of the header.
        public var declaredCount: Int
        /// The function sections, in descriptor order.
        public var functions: [Function]
        /// What was wrong, in input order (a fatal issue last: parsing stopped there).
        public var issues: [MSOSDescriptorIssue]

        /// The size of the header (dwLength, bcdVersion, wIndex, bCount, reserved).
        public static let headerLength = 16
        /// The size of one function section.
        public static let functionLength = 24

        /// A descriptor from its parts (``parse(_:)`` makes these).
        public init(totalLength: Int, declaredCount: Int, functions: [Function], issues: [MSOSDescriptorIssue]) {
            self.totalLength = totalLength
            self.declaredCount = declaredCount
            self.functions = functions
            self.issues = issues
        }

        /// Parses as much as is well-formed; never fails. Check ``issues``.
        /// Bytes beyond dwLength are ignored; fewer than dwLength is reported
        /// as truncated after the whole sections that are present.
        public static func parse(_ bytes: some Collection<UInt8>) -> ExtendedCompatID {
            let bytes = Array(bytes)
            var result = ExtendedCompatID(totalLength: 0, declaredCount: 0, functions: [], issues: [])
            func issue(_ offset: Int, _ kind: MSOSDescriptorIssue.Kind) {
                result.issues.append(.init(descriptor: .msOS10CompatID, offset: offset, kind: kind))
            }
            guard bytes.count >= headerLength else {
                issue(0, .truncated(needed: headerLength, available: bytes.count))
                return result
            }
            let claimed = bytes.le32(0)
            result.totalLength = Int(clamping: claimed)
            result.declaredCount = Int(bytes[8])
            guard bytes.le16(6) == extendedCompatIDIndex else {
                issue(6, .badHeader(field: "wIndex", value: UInt32(bytes.le16(6)), expected: UInt32(extendedCompatIDIndex)))
                return result
            }
            if bytes.le16(4) != version {
                issue(4, .unexpectedValue(field: "bcdVersion", value: UInt32(bytes.le16(4)), expected: UInt32(version)))
            }
            let expected = headerLength + functionLength * result.declaredCount
            guard result.totalLength >= headerLength else {
                issue(0, .badLength(field: "dwLength", value: result.totalLength, minimum: headerLength, maximum: expected))
                return result
            }
            let end = min(result.totalLength, bytes.count)
            let available = (end - headerLength) / functionLength
            for index in 0 ..< min(available, result.declaredCount) {
                let at = headerLength + index * functionLength
                result.functions.append(.init(firstInterfaceNumber: bytes[at],
                                              id: .init(compatibleIDBytes: Array(bytes[at + 2 ..< at + 10]),
                                                        subCompatibleIDBytes: Array(bytes[at + 10 ..< at + 18]))))
            }
            if bytes.count < min(result.totalLength, expected) {
                issue(bytes.count, .truncated(needed: min(result.totalLength, expected), available: bytes.count))
            } else if result.totalLength != expected {
                issue(0, .countMismatch(field: "bCount", declared: result.declaredCount,
                                        found: max(0, result.totalLength - headerLength) / functionLength))
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

    /// A parsed Extended Properties descriptor (the custom properties of one
    /// interface, or of the device when requested with interface 0 of a
    /// non-composite device).
    public struct ExtendedProperties: Hashable, Sendable {
        /// dwLength of the header.
        public var totalLength: Int
        /// wCount of the header.
        public var declaredCount: Int
        /// The custom property sections, in descriptor order.
        public var properties: [MSOSRegistryProperty]
        /// GUIDs from DeviceInterfaceGUID (REG_SZ) / DeviceInterfaceGUIDs
        /// (REG_MULTI_SZ) properties, source ``FirmwareGUID/Source/msOS10``,
        /// with the interface number the caller gave.
        public var declaredInterfaceGUIDs: [FirmwareGUID]
        /// What was wrong, in input order (a fatal issue last: parsing stopped there).
        public var issues: [MSOSDescriptorIssue]

        /// The size of the header (dwLength, bcdVersion, wIndex, wCount).
        public static let headerLength = 10
        /// dwSize, dwPropertyDataType, wPropertyNameLength, dwPropertyDataLength.
        public static let sectionOverhead = 14

        /// A descriptor from its parts (``parse(_:interfaceNumber:)`` makes these).
        public init(totalLength: Int, declaredCount: Int, properties: [MSOSRegistryProperty],
                    declaredInterfaceGUIDs: [FirmwareGUID], issues: [MSOSDescriptorIssue]) {
            self.totalLength = totalLength
            self.declaredCount = declaredCount
            self.properties = properties
            self.declaredInterfaceGUIDs = declaredInterfaceGUIDs
            self.issues = issues
        }

        /// Parses as much as is well-formed; never fails. Check ``issues``.
        /// `interfaceNumber` is the interface the descriptor was requested
        /// for (the low byte of wValue), recorded in the GUIDs it declares.
        public static func parse(_ bytes: some Collection<UInt8>, interfaceNumber: UInt8?) -> ExtendedProperties {
            let bytes = Array(bytes)
            var result = ExtendedProperties(totalLength: 0, declaredCount: 0, properties: [],
                                            declaredInterfaceGUIDs: [], issues: [])
            func issue(_ offset: Int, _ kind: MSOSDescriptorIssue.Kind) {
                result.issues.append(.init(descriptor: .msOS10Properties, offset: offset, kind: kind))
            }
            guard bytes.count >= headerLength else {
                issue(0, .truncated(needed: headerLength, available: bytes.count))
                return result
            }
            result.totalLength = Int(clamping: bytes.le32(0))
            result.declaredCount = Int(bytes.le16(8))
            guard bytes.le16(6) == extendedPropertiesIndex else {
                issue(6, .badHeader(field: "wIndex", value: UInt32(bytes.le16(6)), expected: UInt32(extendedPropertiesIndex)))
                return result
            }
            if bytes.le16(4) != version {
                issue(4, .unexpectedValue(field: "bcdVersion", value: UInt32(bytes.le16(4)), expected: UInt32(version)))
            }
            guard result.totalLength >= headerLength else {
                issue(0, .badLength(field: "dwLength", value: result.totalLength, minimum: headerLength, maximum: Int(UInt32.max)))
                return result
            }
            let end = min(result.totalLength, bytes.count)
            var offset = headerLength
            var sections = 0
            while offset < end, sections < result.declaredCount {
                guard end - offset >= sectionOverhead else {
                    issue(offset, .truncated(needed: sectionOverhead, available: end - offset))
                    return result
                }
                let size = Int(clamping: bytes.le32(offset))
                guard size >= sectionOverhead, size <= end - offset else {
                    if size >= sectionOverhead, end == bytes.count, bytes.count < result.totalLength {
                        issue(offset, .truncated(needed: size, available: end - offset))
                    } else {
                        issue(offset, .badLength(field: "dwSize", value: size, minimum: sectionOverhead, maximum: end - offset))
                    }
                    return result
                }
                let dataType = bytes.le32(offset + 4)
                let nameLength = Int(bytes.le16(offset + 8))
                let nameStart = offset + 10
                let sectionEnd = offset + size
                guard nameLength <= sectionEnd - nameStart - 4 else {
                    issue(offset + 8, .countMismatch(field: "wPropertyNameLength", declared: nameLength,
                                                     found: sectionEnd - nameStart - 4))
                    offset = sectionEnd
                    sections += 1
                    continue
                }
                let dataLengthAt = nameStart + nameLength
                let dataLength = Int(clamping: bytes.le32(dataLengthAt))
                let dataStart = dataLengthAt + 4
                guard dataLength <= sectionEnd - dataStart else {
                    issue(dataLengthAt, .countMismatch(field: "dwPropertyDataLength", declared: dataLength,
                                                       found: sectionEnd - dataStart))
                    offset = sectionEnd
                    sections += 1
                    continue
                }
                var name: String?
                if let units = msosUTF16Units(bytes[nameStart ..< dataLengthAt]) { name = msosSingleString(units) }
                else { issue(offset + 8, .oddUTF16Length(field: "bPropertyName", bytes: nameLength)) }
                let property = MSOSRegistryProperty(dataType: dataType, name: name,
                                                    data: Array(bytes[dataStart ..< dataStart + dataLength]),
                                                    offset: offset)
                result.properties.append(property)
                // Through a local: `result` is captured by `issue`, so two
                // overlapping accesses to it would be checked at run time.
                var sink = [MSOSDescriptorIssue]()
                let found = msosInterfaceGUIDs(from: property, interfaceNumber: interfaceNumber, source: .msOS10,
                                               descriptor: .msOS10Properties, issues: &sink)
                result.declaredInterfaceGUIDs += found
                result.issues += sink
                offset = sectionEnd
                sections += 1
            }
            if bytes.count < result.totalLength {
                issue(bytes.count, .truncated(needed: result.totalLength, available: bytes.count))
            } else if sections != result.declaredCount {
                issue(8, .countMismatch(field: "wCount", declared: result.declaredCount, found: sections))
            } else if offset != result.totalLength {
                issue(offset, .badLength(field: "dwLength", value: result.totalLength, minimum: offset, maximum: offset))
            }
            return result
        }

        /// Parses and throws the first issue, if any.
        public init(validating bytes: some Collection<UInt8>, interfaceNumber: UInt8?) throws(MSOSDescriptorIssue) {
            let result = Self.parse(bytes, interfaceNumber: interfaceNumber)
            if let first = result.issues.first { throw first }
            self = result
        }
    }
}

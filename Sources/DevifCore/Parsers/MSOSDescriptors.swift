// Defensive parsers for Microsoft OS descriptors: the BOS descriptor with the
// MS OS 2.0 platform capability (``BOSDescriptor``), the MS OS 2.0 descriptor
// set (``MSOS20DescriptorSet``) and the MS OS 1.0 string, Extended Compat ID
// and Extended Properties descriptors (``MSOS10``).
//
// Everything here comes from the device and is untrusted. One error model for
// all of them, as ``HIDReportDescriptor`` does: `parse` never fails and
// returns what was well-formed plus ``MSOSDescriptorIssue``s in input order
// (a fatal issue is the last one: parsing stopped there); `init(validating:)`
// throws the first issue instead. Nothing is allocated from a claimed size:
// every length, count and offset is checked against the bytes actually given
// and against the enclosing descriptor's total, and every loop advances by at
// least the minimum header size, so work is linear in the input.

/// Something wrong with a Microsoft OS descriptor, and where.
public struct MSOSDescriptorIssue: Error, Hashable, Sendable, CustomStringConvertible {
    /// Which descriptor the offset is in.
    public enum Descriptor: String, Hashable, Sendable {
        /// The BOS descriptor and its capabilities.
        case bos = "BOS descriptor"
        /// An MS OS 2.0 descriptor set.
        case msOS20Set = "MS OS 2.0 descriptor set"
        /// The MS OS 1.0 string descriptor (index 0xEE).
        case msOS10String = "MS OS 1.0 string descriptor"
        /// An MS OS 1.0 Extended Compat ID descriptor.
        case msOS10CompatID = "MS OS 1.0 Extended Compat ID descriptor"
        /// An MS OS 1.0 Extended Properties descriptor.
        case msOS10Properties = "MS OS 1.0 Extended Properties descriptor"
    }

    /// What is wrong; ``isFatal`` tells whether parsing stopped there.
    public enum Kind: Hashable, Sendable {
        /// Fewer bytes than a header or a declared length needs (parsing stops).
        case truncated(needed: Int, available: Int)
        /// A length field that is too small for its structure, or that
        /// overruns the enclosing descriptor (parsing stops).
        case badLength(field: String, value: Int, minimum: Int, maximum: Int)
        /// A version or reserved field with an unexpected value; parsing goes on.
        case unexpectedValue(field: String, value: UInt32, expected: UInt32)
        /// A header field that says this is not the expected descriptor
        /// (type, signature, index); parsing stops.
        case badHeader(field: String, value: UInt32, expected: UInt32)
        /// A count field that disagrees with what follows.
        case countMismatch(field: String, declared: Int, found: Int)
        /// A UTF-16 string with an odd number of bytes; the property is not decoded.
        case oddUTF16Length(field: String, bytes: Int)
        /// A REG_MULTI_SZ value not ending in two NULs; its strings are still used.
        case multiStringNotTerminated
        /// A DeviceInterfaceGUID(s) value of a type other than REG_SZ or REG_MULTI_SZ.
        case unsupportedPropertyType(name: String, type: UInt32)
        /// A DeviceInterfaceGUID(s) string that is not a GUID; skipped.
        case invalidGUID(text: String)
        /// A descriptor type the specification does not define; skipped by its length.
        case unknownDescriptorType(UInt16)
        /// A feature descriptor before any set or subset header could own it.
        case misplacedDescriptor(type: UInt16)

        /// Whether parsing stopped at this issue.
        public var isFatal: Bool {
            switch self {
            case .truncated, .badLength, .badHeader: true
            default: false
            }
        }
    }

    /// Which descriptor the issue is in.
    public var descriptor: Descriptor
    /// Byte offset, from the start of the descriptor given to the parser.
    public var offset: Int
    /// What is wrong.
    public var kind: Kind

    /// An issue of `kind` at byte `offset` of `descriptor`.
    public init(descriptor: Descriptor, offset: Int, kind: Kind) {
        self.descriptor = descriptor
        self.offset = offset
        self.kind = kind
    }

    public var description: String {
        let what: String = switch kind {
        case .truncated(let needed, let available):
            "needs \(needed) bytes but only \(available) remain (truncated; read the full length the header declares)"
        case .badLength(let field, let value, let minimum, let maximum):
            "\(field) is \(value), outside \(minimum)...\(maximum) (too small, or overruns its enclosing descriptor)"
        case .unexpectedValue(let field, let value, let expected):
            "\(field) is 0x\(String(value, radix: 16)), expected 0x\(String(expected, radix: 16))"
        case .badHeader(let field, let value, let expected):
            "\(field) is 0x\(String(value, radix: 16)), expected 0x\(String(expected, radix: 16)): not this descriptor"
        case .countMismatch(let field, let declared, let found):
            "\(field) declares \(declared) entries but \(found) were found"
        case .oddUTF16Length(let field, let count):
            "\(field) has \(count) bytes, not a whole number of UTF-16 code units; not decoded"
        case .multiStringNotTerminated: "REG_MULTI_SZ value does not end with two NULs; strings used as found"
        case .unsupportedPropertyType(let name, let type):
            "property \(quotedForMessage(name)) has data type \(type), expected 1 (REG_SZ) or 7 (REG_MULTI_SZ); ignored"
        case .invalidGUID(let text): "\(quotedForMessage(text)) is not a GUID; ignored"
        case .unknownDescriptorType(let type): "unknown descriptor type 0x\(String(type, radix: 16)), skipped"
        case .misplacedDescriptor(let type):
            "descriptor type 0x\(String(type, radix: 16)) outside the place the specification allows; ignored"
        }
        return "\(descriptor.rawValue), offset \(offset): \(what)"
    }
}

/// An 8-byte compatible ID and sub-compatible ID (MS OS 1.0 and 2.0), such as
/// `WINUSB` / empty.
public struct MSOSCompatibleID: Hashable, Sendable {
    /// The 8 bytes as sent (NUL padded).
    public var compatibleIDBytes: [UInt8]
    /// The 8 bytes as sent (NUL padded).
    public var subCompatibleIDBytes: [UInt8]

    /// An ID from the 8 bytes of each field, as sent.
    public init(compatibleIDBytes: [UInt8], subCompatibleIDBytes: [UInt8]) {
        self.compatibleIDBytes = compatibleIDBytes
        self.subCompatibleIDBytes = subCompatibleIDBytes
    }

    /// The compatible ID up to its first NUL; non-ASCII bytes become U+FFFD
    /// (the specification allows only uppercase letters, digits and `_`).
    public var compatibleID: String { msosASCII(compatibleIDBytes) }
    /// The sub-compatible ID up to its first NUL, as ``compatibleID``.
    public var subCompatibleID: String { msosASCII(subCompatibleIDBytes) }
}

/// A registry property a device asks Windows to store for itself or for one
/// function (MS OS 2.0 registry property descriptor, MS OS 1.0 custom property
/// section).
public struct MSOSRegistryProperty: Hashable, Sendable {
    /// REG_SZ.
    public static let stringType: UInt32 = 1
    /// REG_EXPAND_SZ.
    public static let expandStringType: UInt32 = 2
    /// REG_MULTI_SZ.
    public static let multiStringType: UInt32 = 7

    /// The registry data type (1 REG_SZ, 2 REG_EXPAND_SZ, 3 REG_BINARY,
    /// 4 REG_DWORD_LITTLE_ENDIAN, 5 REG_DWORD_BIG_ENDIAN, 6 REG_LINK, 7 REG_MULTI_SZ).
    public var dataType: UInt32
    /// The name, decoded from UTF-16LE up to its NUL (unpaired surrogates
    /// become U+FFFD); nil when its byte length was odd.
    public var name: String?
    /// The raw value bytes.
    public var data: [UInt8]
    /// Offset of the descriptor or section that carried it.
    public var offset: Int

    /// A property from its parts.
    public init(dataType: UInt32, name: String?, data: [UInt8], offset: Int) {
        self.dataType = dataType
        self.name = name
        self.data = data
        self.offset = offset
    }

    /// The value as strings: one for REG_SZ / REG_EXPAND_SZ, the list for
    /// REG_MULTI_SZ (up to its first empty string); nil for other types or an
    /// odd byte count. Lenient: a missing terminator is accepted.
    public var strings: [String]? {
        guard let units = msosUTF16Units(data) else { return nil }
        switch dataType {
        case Self.stringType, Self.expandStringType: return [msosSingleString(units)]
        case Self.multiStringType: return msosMultiString(units).strings
        default: return nil
        }
    }
}

// MARK: - MS OS 2.0 descriptor set

/// A parsed MS OS 2.0 descriptor set (Microsoft OS 2.0 Descriptors
/// Specification, section 3), as returned by the vendor request the BOS
/// platform capability names (``BOSDescriptor/MSOS20SetInfo``).
///
/// Error model: partial result plus ``issues`` (``parse(_:)``), or the first
/// issue thrown (``init(validating:)``). Unknown descriptor types are skipped
/// by their `wLength`; a length that is too small or that overruns the set or
/// its subset stops the parse.
public struct MSOS20DescriptorSet: Hashable, Sendable {
    /// Descriptor types (wDescriptorType).
    public enum DescriptorType: UInt16, Sendable {
        /// The headers: MS_OS_20_SET_HEADER_DESCRIPTOR (0),
        /// MS_OS_20_SUBSET_HEADER_CONFIGURATION (1), MS_OS_20_SUBSET_HEADER_FUNCTION (2).
        case setHeader = 0x00, configurationSubsetHeader = 0x01, functionSubsetHeader = 0x02
        /// Features: MS_OS_20_FEATURE_COMPATBLE_ID (3, the specification's spelling),
        /// MS_OS_20_FEATURE_REG_PROPERTY (4), MS_OS_20_FEATURE_MIN_RESUME_TIME (5).
        case compatibleID = 0x03, registryProperty = 0x04, minResumeTime = 0x05
        /// Features: MS_OS_20_FEATURE_MODEL_ID (6), MS_OS_20_FEATURE_CCGP_DEVICE (7),
        /// MS_OS_20_FEATURE_VENDOR_REVISION (8).
        case modelID = 0x06, ccgpDevice = 0x07, vendorRevision = 0x08
    }

    /// The compatible IDs and registry properties of the device or of one function.
    public struct Features: Hashable, Sendable {
        /// Compatible ID descriptors (normally one, such as `WINUSB`).
        public var compatibleIDs: [MSOSCompatibleID]
        /// Registry property descriptors (`DeviceInterfaceGUIDs`, ...).
        public var registryProperties: [MSOSRegistryProperty]

        /// Features from their parts; none by default.
        public init(compatibleIDs: [MSOSCompatibleID] = [], registryProperties: [MSOSRegistryProperty] = []) {
            self.compatibleIDs = compatibleIDs
            self.registryProperties = registryProperties
        }
    }

    /// One function subset.
    public struct Function: Hashable, Sendable {
        /// The configuration subset it is in, if any: the header's
        /// bConfigurationValue byte. (Windows treats that byte as the
        /// configuration *index*, 0-based, whatever the field is called.)
        public var configurationValue: UInt8?
        /// bFirstInterface: the function's first interface number.
        public var firstInterface: UInt8
        /// The function's compatible IDs and registry properties.
        public var features: Features

        /// A function subset from its parts.
        public init(configurationValue: UInt8?, firstInterface: UInt8, features: Features) {
            self.configurationValue = configurationValue
            self.firstInterface = firstInterface
            self.features = features
        }
    }

    /// dwWindowsVersion of the set header (e.g. 0x06030000, Windows 8.1).
    public var windowsVersion: UInt32
    /// wTotalLength of the set header.
    public var totalLength: Int
    /// Features outside any function subset (the whole device, in any
    /// configuration subset).
    public var device: Features
    /// Function subsets in descriptor order.
    public var functions: [Function]
    /// GUIDs from `DeviceInterfaceGUID` (REG_SZ) and `DeviceInterfaceGUIDs`
    /// (REG_MULTI_SZ) properties, device first, then functions in order;
    /// source ``FirmwareGUID/Source/msOS20``, interface number = the function's
    /// first interface (nil for the device).
    public var declaredInterfaceGUIDs: [FirmwareGUID]
    /// What was wrong, in input order (a fatal issue last: parsing stopped there).
    public var issues: [MSOSDescriptorIssue]

    /// The fixed size of the set header.
    public static let setHeaderLength = 10

    /// A set from its parts (``parse(_:)`` makes these).
    public init(windowsVersion: UInt32, totalLength: Int, device: Features, functions: [Function],
                declaredInterfaceGUIDs: [FirmwareGUID], issues: [MSOSDescriptorIssue]) {
        self.windowsVersion = windowsVersion
        self.totalLength = totalLength
        self.device = device
        self.functions = functions
        self.declaredInterfaceGUIDs = declaredInterfaceGUIDs
        self.issues = issues
    }

    /// Parses as much as is well-formed; never fails. Check ``issues``.
    public static func parse(_ bytes: some Collection<UInt8>) -> MSOS20DescriptorSet {
        var parser = MSOS20Parser(bytes: Array(bytes))
        return parser.run()
    }

    /// Parses a set fetched for `info` (from the BOS descriptor) and also
    /// reports a set header that disagrees with it: Windows rejects a set
    /// whose wTotalLength differs from wMSOSDescriptorSetTotalLength, and a
    /// different dwWindowsVersion means the device answered with another set.
    public static func parse(_ bytes: some Collection<UInt8>, for info: BOSDescriptor.MSOS20SetInfo)
        -> MSOS20DescriptorSet {
        var result = parse(bytes)
        // Only when the header itself was readable.
        guard result.issues.first.map({ $0.offset >= setHeaderLength || !$0.kind.isFatal }) ?? true else { return result }
        var mismatches = [MSOSDescriptorIssue]()
        if result.windowsVersion != info.windowsVersion {
            mismatches.append(.init(descriptor: .msOS20Set, offset: 4,
                                    kind: .unexpectedValue(field: "dwWindowsVersion", value: result.windowsVersion,
                                                           expected: info.windowsVersion)))
        }
        if result.totalLength != Int(info.descriptorSetTotalLength) {
            mismatches.append(.init(descriptor: .msOS20Set, offset: 8,
                                    kind: .unexpectedValue(field: "wTotalLength", value: UInt32(result.totalLength),
                                                           expected: UInt32(info.descriptorSetTotalLength))))
        }
        result.issues.insert(contentsOf: mismatches, at: 0)
        return result
    }

    /// Parses and throws the first issue, if any.
    public init(validating bytes: some Collection<UInt8>) throws(MSOSDescriptorIssue) {
        let result = Self.parse(bytes)
        if let first = result.issues.first { throw first }
        self = result
    }
}

private struct MSOS20Parser {
    let bytes: [UInt8]
    var issues: [MSOSDescriptorIssue] = []
    var device = MSOS20DescriptorSet.Features()
    var functions: [MSOS20DescriptorSet.Function] = []
    var guids: [FirmwareGUID] = []
    /// Where the bytes end when they are fewer than wTotalLength: a length
    /// reaching past it means a short read, not a lying length.
    var truncatedEnd: Int?

    init(bytes: [UInt8]) { self.bytes = bytes }

    /// Reports `value` (a length at `offset`) that does not fit before
    /// `limit`: truncation if the limit is the end of short input, else a bad length.
    mutating func lengthIssue(_ at: Int, from offset: Int, field: String, value: Int, minimum: Int, limit: Int) {
        if value >= minimum, limit == truncatedEnd {
            issue(at, .truncated(needed: value, available: limit - offset))
        } else {
            issue(at, .badLength(field: field, value: value, minimum: minimum, maximum: limit - offset))
        }
    }

    mutating func issue(_ offset: Int, _ kind: MSOSDescriptorIssue.Kind) {
        issues.append(MSOSDescriptorIssue(descriptor: .msOS20Set, offset: offset, kind: kind))
    }

    mutating func run() -> MSOS20DescriptorSet {
        var result = MSOS20DescriptorSet(windowsVersion: 0, totalLength: 0, device: .init(), functions: [],
                                         declaredInterfaceGUIDs: [], issues: [])
        let header = MSOS20DescriptorSet.setHeaderLength
        guard bytes.count >= header else {
            issue(0, .truncated(needed: header, available: bytes.count))
            result.issues = issues
            return result
        }
        let wLength = Int(bytes.le16(0)), type = bytes.le16(2)
        result.windowsVersion = bytes.le32(4)
        let total = Int(bytes.le16(8))
        result.totalLength = total
        if wLength != header {
            issue(0, .badLength(field: "set header wLength", value: wLength, minimum: header, maximum: header))
        } else if type != MSOS20DescriptorSet.DescriptorType.setHeader.rawValue {
            issue(2, .badHeader(field: "set header wDescriptorType", value: UInt32(type), expected: 0))
        } else if total < header {
            issue(8, .badLength(field: "wTotalLength", value: total, minimum: header, maximum: 0xFFFF))
        } else {
            let end = min(total, bytes.count)
            if bytes.count < total { truncatedEnd = bytes.count }
            walk(from: header, setEnd: end)
            if issues.last?.kind.isFatal != true, bytes.count < total {
                issue(bytes.count, .truncated(needed: total, available: bytes.count))
            }
        }
        result.device = device
        result.functions = functions
        result.declaredInterfaceGUIDs = guids
        result.issues = issues
        return result
    }

    /// Walks the descriptors of the set; subset headers narrow where the
    /// following features belong until their own length ends.
    mutating func walk(from start: Int, setEnd: Int) {
        var offset = start
        var configurationEnd = setEnd
        var configurationValue: UInt8?
        var functionEnd = start
        var functionIndex: Int?
        while offset < setEnd {
            if offset >= configurationEnd { configurationValue = nil; configurationEnd = setEnd }
            if offset >= functionEnd { functionIndex = nil }
            guard setEnd - offset >= 4 else {
                issue(offset, .truncated(needed: 4, available: setEnd - offset))
                return
            }
            let length = Int(bytes.le16(offset)), type = bytes.le16(offset + 2)
            // The innermost open scope bounds every descriptor inside it.
            let scopeEnd = functionIndex != nil ? functionEnd : configurationEnd
            let minimum = Self.minimumLength(type)
            guard length >= minimum, length <= scopeEnd - offset else {
                lengthIssue(offset, from: offset, field: "wLength", value: length, minimum: minimum, limit: scopeEnd)
                return
            }
            switch MSOS20DescriptorSet.DescriptorType(rawValue: type) {
            case .configurationSubsetHeader:
                let subsetLength = Int(bytes.le16(offset + 6))
                guard functionIndex == nil, configurationValue == nil else {
                    issue(offset, .misplacedDescriptor(type: type))
                    offset += length
                    continue
                }
                guard subsetLength >= length, subsetLength <= setEnd - offset else {
                    lengthIssue(offset + 6, from: offset, field: "configuration subset wTotalLength",
                                value: subsetLength, minimum: length, limit: setEnd)
                    return
                }
                configurationValue = bytes[offset + 4]
                configurationEnd = offset + subsetLength
            case .functionSubsetHeader:
                let subsetLength = Int(bytes.le16(offset + 6))
                guard functionIndex == nil else {
                    issue(offset, .misplacedDescriptor(type: type))
                    offset += length
                    continue
                }
                guard subsetLength >= length, subsetLength <= configurationEnd - offset else {
                    lengthIssue(offset + 6, from: offset, field: "function subset wSubsetLength",
                                value: subsetLength, minimum: length, limit: configurationEnd)
                    return
                }
                functions.append(.init(configurationValue: configurationValue, firstInterface: bytes[offset + 4],
                                       features: .init()))
                functionIndex = functions.count - 1
                functionEnd = offset + subsetLength
            case .compatibleID:
                let id = MSOSCompatibleID(compatibleIDBytes: Array(bytes[offset + 4 ..< offset + 12]),
                                          subCompatibleIDBytes: Array(bytes[offset + 12 ..< offset + 20]))
                if let index = functionIndex { functions[index].features.compatibleIDs.append(id) }
                else { device.compatibleIDs.append(id) }
            case .registryProperty:
                if let property = registryProperty(at: offset, length: length) {
                    let interface = functionIndex.map { functions[$0].firstInterface }
                    var sink = [MSOSDescriptorIssue]()
                    guids += msosInterfaceGUIDs(from: property, interfaceNumber: interface, source: .msOS20,
                                                descriptor: .msOS20Set, issues: &sink)
                    issues += sink
                    if let index = functionIndex { functions[index].features.registryProperties.append(property) }
                    else { device.registryProperties.append(property) }
                }
            case .setHeader:
                issue(offset, .misplacedDescriptor(type: type))
            case .minResumeTime, .modelID, .ccgpDevice, .vendorRevision:
                break // Defined, but nothing devif uses.
            case nil:
                issue(offset, .unknownDescriptorType(type))
            }
            offset += length
        }
    }

    static func minimumLength(_ type: UInt16) -> Int {
        switch MSOS20DescriptorSet.DescriptorType(rawValue: type) {
        case .configurationSubsetHeader, .functionSubsetHeader: 8
        case .compatibleID: 20
        case .registryProperty: 10 // header, type, name length, (empty name), data length
        case .setHeader: 10
        default: 4
        }
    }

    /// Decodes one registry property descriptor; nil (with an issue) when its
    /// inner lengths do not fit its wLength.
    mutating func registryProperty(at offset: Int, length: Int) -> MSOSRegistryProperty? {
        let end = offset + length
        let dataType = UInt32(bytes.le16(offset + 4))
        let nameLength = Int(bytes.le16(offset + 6))
        let nameStart = offset + 8
        guard nameLength <= end - nameStart - 2 else {
            issue(offset + 6, .countMismatch(field: "wPropertyNameLength", declared: nameLength,
                                             found: max(0, end - nameStart - 2)))
            return nil
        }
        let dataLengthAt = nameStart + nameLength
        let dataLength = Int(bytes.le16(dataLengthAt))
        let dataStart = dataLengthAt + 2
        guard dataLength <= end - dataStart else {
            issue(dataLengthAt, .countMismatch(field: "wPropertyDataLength", declared: dataLength, found: end - dataStart))
            return nil
        }
        let nameBytes = bytes[nameStart ..< dataLengthAt]
        var name: String?
        if let units = msosUTF16Units(nameBytes) { name = msosSingleString(units) }
        else { issue(offset + 6, .oddUTF16Length(field: "PropertyName", bytes: nameLength)) }
        return MSOSRegistryProperty(dataType: dataType, name: name,
                                    data: Array(bytes[dataStart ..< dataStart + dataLength]), offset: offset)
    }
}

// MARK: - Shared helpers

extension Array where Element == UInt8 {
    /// Little-endian reads (USB descriptors); callers check bounds first.
    func le16(_ offset: Int) -> UInt16 { UInt16(self[offset]) | UInt16(self[offset + 1]) << 8 }
    func le32(_ offset: Int) -> UInt32 {
        UInt32(self[offset]) | UInt32(self[offset + 1]) << 8 | UInt32(self[offset + 2]) << 16
            | UInt32(self[offset + 3]) << 24
    }

    /// Big-endian (network order) reads, as USB/IP's wire protocol has them; callers check bounds first.
    func be16(_ offset: Int) -> UInt16 { UInt16(self[offset]) << 8 | UInt16(self[offset + 1]) }
    func be32(_ offset: Int) -> UInt32 {
        UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16 | UInt32(self[offset + 2]) << 8
            | UInt32(self[offset + 3])
    }
}

/// ASCII up to the first NUL; other bytes become U+FFFD.
func msosASCII(_ bytes: [UInt8]) -> String {
    var scalars = String.UnicodeScalarView()
    for byte in bytes {
        if byte == 0 { break }
        scalars.append(byte < 0x80 ? Unicode.Scalar(byte) : "\u{FFFD}")
    }
    return String(scalars)
}

/// UTF-16LE code units, or nil for an odd byte count.
func msosUTF16Units(_ bytes: some Collection<UInt8>) -> [UInt16]? {
    guard bytes.count % 2 == 0 else { return nil }
    var units = [UInt16]()
    units.reserveCapacity(bytes.count / 2)
    var iterator = bytes.makeIterator()
    while let low = iterator.next(), let high = iterator.next() { units.append(UInt16(low) | UInt16(high) << 8) }
    return units
}

/// A string up to its first NUL (a missing NUL is tolerated); unpaired
/// surrogates become U+FFFD.
func msosSingleString(_ units: [UInt16]) -> String {
    let end = units.firstIndex(of: 0) ?? units.endIndex
    return String(decoding: units[..<end], as: UTF16.self)
}

/// REG_MULTI_SZ: strings up to the first empty one; `terminated` says whether
/// the list ended with two NULs (one after the last string, one ending the list).
func msosMultiString(_ units: [UInt16]) -> (strings: [String], terminated: Bool) {
    var strings = [String]()
    var start = 0
    while start < units.count {
        guard let nul = units[start...].firstIndex(of: 0) else {
            // Last string without any NUL.
            strings.append(String(decoding: units[start...], as: UTF16.self))
            return (strings, false)
        }
        if nul == start { return (strings, true) } // The empty string ends the list.
        strings.append(String(decoding: units[start ..< nul], as: UTF16.self))
        start = nul + 1
    }
    // Ended after a string's NUL without the list's closing NUL (or empty data).
    return (strings, false)
}

/// Whether a name equals `target`, ignoring ASCII case (as Windows compares
/// registry value names for these).
private func msosNameEquals(_ name: String, _ target: String) -> Bool {
    func lower(_ byte: UInt8) -> UInt8 { byte &- 0x41 < 26 ? byte | 0x20 : byte }
    let a = Array(name.utf8), b = Array(target.utf8)
    guard a.count == b.count else { return false }
    for (x, y) in zip(a, b) where lower(x) != lower(y) { return false }
    return true
}

/// The GUIDs a `DeviceInterfaceGUID` / `DeviceInterfaceGUIDs` property
/// declares (names compared ignoring ASCII case); other properties yield none.
/// Problems become issues at the property's offset.
func msosInterfaceGUIDs(from property: MSOSRegistryProperty, interfaceNumber: UInt8?, source: FirmwareGUID.Source,
                        descriptor: MSOSDescriptorIssue.Descriptor,
                        issues: inout [MSOSDescriptorIssue]) -> [FirmwareGUID] {
    guard let name = property.name,
          msosNameEquals(name, "DeviceInterfaceGUID") || msosNameEquals(name, "DeviceInterfaceGUIDs") else { return [] }
    let at = property.offset
    guard property.dataType == MSOSRegistryProperty.stringType
            || property.dataType == MSOSRegistryProperty.multiStringType else {
        issues.append(.init(descriptor: descriptor, offset: at,
                            kind: .unsupportedPropertyType(name: name, type: property.dataType)))
        return []
    }
    guard let units = msosUTF16Units(property.data) else {
        issues.append(.init(descriptor: descriptor, offset: at,
                            kind: .oddUTF16Length(field: "PropertyData", bytes: property.data.count)))
        return []
    }
    var texts: [String]
    if property.dataType == MSOSRegistryProperty.multiStringType {
        let list = msosMultiString(units)
        if !list.terminated { issues.append(.init(descriptor: descriptor, offset: at, kind: .multiStringNotTerminated)) }
        texts = list.strings
    } else {
        texts = [msosSingleString(units)]
    }
    var guids = [FirmwareGUID]()
    for text in texts {
        do throws(GUIDParseError) {
            guids.append(FirmwareGUID(guid: try GUID(parsing: text), interfaceNumber: interfaceNumber, source: source))
        } catch {
            issues.append(.init(descriptor: descriptor, offset: at, kind: .invalidGUID(text: text)))
        }
    }
    return guids
}

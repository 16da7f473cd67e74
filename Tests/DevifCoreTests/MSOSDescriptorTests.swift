import SeededRandom
import Testing
@testable import DevifCore

// Builders that mirror the firmware macros (U16_TO_U8S_LE etc.), so the test
// descriptors are composed field by field the way the published examples are.
private func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
private func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
/// UTF-16LE of ASCII text, optionally with `nuls` NUL code units after it.
private func utf16(_ text: String, nuls: Int = 1) -> [UInt8] {
    text.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] } + [UInt8](repeating: 0, count: 2 * nuls)
}
private func id8(_ text: String) -> [UInt8] { Array(text.utf8) + [UInt8](repeating: 0, count: 8 - text.utf8.count) }

/// The MS OS 2.0 platform capability UUID as it is sent (Windows GUID layout).
private let msOS20UUIDWire: [UInt8] = [0xDF, 0x60, 0xDD, 0xD8, 0x89, 0x45, 0xC7, 0x4C,
                                       0x9C, 0xD2, 0x65, 0x9D, 0x9E, 0x64, 0x8A, 0x9F]
/// The WebUSB platform capability UUID {3408b638-09a9-47a0-8bfd-a0768815b665} as sent.
private let webUSBUUIDWire: [UInt8] = [0x38, 0xB6, 0x08, 0x34, 0xA9, 0x09, 0xA0, 0x47,
                                       0x8B, 0xFD, 0xA0, 0x76, 0x88, 0x15, 0xB6, 0x65]
private let tinyUSBGUIDText = "{975F44D9-0D08-43FD-8B3E-127CA8AFFF9D}"
private let tinyUSBGUID = GUID(high: 0x975F_44D9_0D08_43FD, low: 0x8B3E_127C_A8AF_FF9D)

/// Layout of TinyUSB's examples/device/webusb_serial/src/usb_descriptors.c:
/// TUD_BOS_DESCRIPTOR(total, 2), TUD_BOS_WEBUSB_DESCRIPTOR(VENDOR_REQUEST_WEBUSB = 1,
/// iLandingPage 1), TUD_BOS_MS_OS_20_DESCRIPTOR(MS_OS_20_DESC_LEN = 0xB2,
/// VENDOR_REQUEST_MICROSOFT = 2).
private let tinyUSBBOS: [UInt8] = {
    let webUSB: [UInt8] = [24, 0x10, 0x05, 0x00] + webUSBUUIDWire + le16(0x0100) + [1, 1]
    let msOS20: [UInt8] = [28, 0x10, 0x05, 0x00] + msOS20UUIDWire + le32(0x0603_0000) + le16(0xB2) + [2, 0]
    return [5, 0x0F] + le16(5 + webUSB.count + msOS20.count) + [2] + webUSB + msOS20
}()

/// TinyUSB webusb_serial's desc_ms_os_20 (0xB2 bytes): set header (Windows
/// 8.1), configuration subset 0, function subset for the vendor interface
/// (ITF_NUM_VENDOR = 2), WINUSB compatible ID, and a REG_MULTI_SZ
/// DeviceInterfaceGUIDs registry property with one GUID and a double NUL.
private let tinyUSBSet: [UInt8] = {
    let total = 0xB2
    var set = le16(0x0A) + le16(0x00) + le32(0x0603_0000) + le16(total)
    set += le16(0x08) + le16(0x01) + [0, 0] + le16(total - 0x0A)
    set += le16(0x08) + le16(0x02) + [2, 0] + le16(total - 0x0A - 0x08)
    set += le16(0x14) + le16(0x03) + id8("WINUSB") + id8("")
    let name = utf16("DeviceInterfaceGUIDs") // 0x2A bytes with its NUL
    let data = utf16(tinyUSBGUIDText, nuls: 2) // 0x50 bytes
    set += le16(total - 0x0A - 0x08 - 0x08 - 0x14) + le16(0x04) + le16(0x0007) + le16(name.count) + name
        + le16(data.count) + data
    return set
}()

/// A registry property descriptor (MS OS 2.0, type 0x04).
private func property20(type: Int, name: [UInt8], data: [UInt8]) -> [UInt8] {
    le16(10 + name.count + data.count) + le16(0x04) + le16(type) + le16(name.count) + name + le16(data.count) + data
}

/// A set header followed by `body`, wTotalLength covering both.
private func set20(_ body: [UInt8], version: UInt32 = 0x0603_0000) -> [UInt8] {
    le16(0x0A) + le16(0x00) + le32(version) + le16(10 + body.count) + body
}

/// Microsoft OS 1.0 Descriptors specification, "OS String Descriptor"
/// example: "MSFT100", vendor code 0x20 (any value works), bPad 0.
private let osString: [UInt8] = [0x12, 0x03] + utf16("MSFT100", nuls: 0) + [0x20, 0x00]

/// Extended Compat ID OS Feature Descriptor specification example layout:
/// header (dwLength, bcdVersion 1.00, wIndex 4, bCount, 7 reserved) and one
/// function section per interface (here two: WINUSB on 0, a sub-compatible ID on 2).
private let compatID: [UInt8] = {
    var d = le32(16 + 2 * 24) + le16(0x0100) + le16(0x0004) + [2] + [UInt8](repeating: 0, count: 7)
    d += [0, 1] + id8("WINUSB") + id8("") + [UInt8](repeating: 0, count: 6)
    d += [2, 1] + id8("RNDIS") + id8("5162001") + [UInt8](repeating: 0, count: 6)
    return d
}()

/// An MS OS 1.0 custom property section (Extended Properties specification layout).
private func section10(type: UInt32, name: [UInt8], data: [UInt8]) -> [UInt8] {
    le32(UInt32(14 + name.count + data.count)) + le32(type) + le16(name.count) + name + le32(UInt32(data.count)) + data
}

private func properties10(_ sections: [[UInt8]], count: Int? = nil) -> [UInt8] {
    let body = sections.flatMap { $0 }
    return le32(UInt32(10 + body.count)) + le16(0x0100) + le16(0x0005) + le16(count ?? sections.count) + body
}

/// The Extended Properties descriptor that WinUSB firmware commonly sends for
/// one interface: a REG_SZ DeviceInterfaceGUID with its NUL.
private let winUSBProperties = properties10([section10(type: 1, name: utf16("DeviceInterfaceGUID"),
                                                       data: utf16(tinyUSBGUIDText))])

@Suite struct MSOSDescriptorTests {
    // MARK: BOS

    @Test func tinyUSBBOSRoundTrip() throws {
        let bos = try BOSDescriptor(validating: tinyUSBBOS)
        #expect(bos.totalLength == 57)
        #expect(bos.declaredCapabilityCount == 2)
        #expect(bos.capabilities.map(\.type) == [5, 5])
        #expect(bos.capabilities.map(\.offset) == [5, 29])
        #expect(bos.capabilities[0].platformCapabilityUUID?.description == "{3408b638-09a9-47a0-8bfd-a0768815b665}")
        #expect(bos.capabilities[1].platformCapabilityUUID == BOSDescriptor.msOS20PlatformUUID)
        #expect(BOSDescriptor.msOS20PlatformUUID.description == "{d8dd60df-4589-4cc7-9cd2-659d9e648a9f}")
        #expect(bos.msOS20DescriptorSets == [.init(windowsVersion: 0x0603_0000, descriptorSetTotalLength: 0xB2,
                                                   vendorCode: 2, altEnumCode: 0)])
        #expect(bos.msOS20DescriptorSet()?.vendorCode == 2)
    }

    @Test func setSelectionPicksHighestVersionNotAboveTheEmulatedOne() {
        let infos = le32(0x0A00_0000) + le16(0x100) + [7, 0] + le32(0x0603_0000) + le16(0xB2) + [2, 1]
        let cap: [UInt8] = [UInt8(20 + infos.count), 0x10, 0x05, 0x00] + msOS20UUIDWire + infos
        let bos = BOSDescriptor.parse([5, 0x0F] + le16(5 + cap.count) + [1] + cap)
        #expect(bos.issues.isEmpty)
        #expect(bos.msOS20DescriptorSets.count == 2)
        #expect(bos.msOS20DescriptorSet(forWindowsVersion: 0x0603_0000)?.vendorCode == 2)
        #expect(bos.msOS20DescriptorSet(forWindowsVersion: 0x0603_0000)?.altEnumCode == 1)
        #expect(bos.msOS20DescriptorSet(forWindowsVersion: 0x0A00_0000)?.vendorCode == 7)
        #expect(bos.msOS20DescriptorSet(forWindowsVersion: 0x0602_0000) == nil)
    }

    @Test func bosMalformed() {
        // Truncated at every length: an issue, never a trap, and never more
        // capabilities than whole ones in the prefix.
        for n in 0 ..< tinyUSBBOS.count {
            let bos = BOSDescriptor.parse(tinyUSBBOS.prefix(n))
            #expect(!bos.issues.isEmpty, "prefix \(n)")
            #expect(bos.capabilities.count <= (n >= 57 ? 2 : n >= 29 ? 1 : 0), "prefix \(n)")
        }
        // Zero capability length stops (no endless loop).
        var zero = tinyUSBBOS
        zero[5] = 0
        let z = BOSDescriptor.parse(zero)
        #expect(z.issues.last?.kind == .badLength(field: "capability bLength", value: 0, minimum: 3, maximum: 52))
        // Capability length overrunning wTotalLength.
        var over = tinyUSBBOS
        over[29] = 200
        #expect(BOSDescriptor.parse(over).issues.last?.kind.isFatal == true)
        #expect(BOSDescriptor.parse(over).capabilities.count == 1)
        // bNumDeviceCaps that lies.
        var count = tinyUSBBOS
        count[4] = 5
        #expect(BOSDescriptor.parse(count).issues == [.init(descriptor: .bos, offset: 4,
                                                             kind: .countMismatch(field: "bNumDeviceCaps", declared: 5, found: 2))])
        // Wrong descriptor type, zero header length.
        var type = tinyUSBBOS
        type[1] = 0x02
        #expect(BOSDescriptor.parse(type).issues.first?.kind.isFatal == true)
        var header = tinyUSBBOS
        header[0] = 0
        #expect(BOSDescriptor.parse(header).issues.first?.kind.isFatal == true)
        // Huge wTotalLength with few bytes: truncated, both capabilities kept.
        var huge = tinyUSBBOS
        huge[2] = 0xFF; huge[3] = 0xFF
        let h = BOSDescriptor.parse(huge)
        #expect(h.capabilities.count == 2)
        #expect(h.issues.last?.kind == .truncated(needed: 0xFFFF, available: 57))
        // MS OS 2.0 capability with a partial set info: whole ones kept.
        var partial = Array(tinyUSBBOS.prefix(57))
        partial[29] = 25 // 20 + 5: no whole set info
        partial[2] = 54
        let p = BOSDescriptor.parse(partial.prefix(54))
        #expect(p.msOS20DescriptorSets.isEmpty)
        #expect(p.issues.contains { if case .countMismatch = $0.kind { true } else { false } })
    }

    // MARK: MS OS 2.0 descriptor set

    @Test func tinyUSBSetRoundTrip() throws {
        #expect(tinyUSBSet.count == 0xB2)
        let set = try MSOS20DescriptorSet(validating: tinyUSBSet)
        #expect(set.windowsVersion == 0x0603_0000)
        #expect(set.totalLength == 0xB2)
        #expect(set.device == .init())
        #expect(set.functions.count == 1)
        let function = set.functions[0]
        #expect(function.configurationValue == 0)
        #expect(function.firstInterface == 2)
        #expect(function.features.compatibleIDs.map(\.compatibleID) == ["WINUSB"])
        #expect(function.features.compatibleIDs.map(\.subCompatibleID) == [""])
        #expect(function.features.compatibleIDs[0].compatibleIDBytes == id8("WINUSB"))
        let property = try #require(function.features.registryProperties.first)
        #expect(property.dataType == 7)
        #expect(property.name == "DeviceInterfaceGUIDs")
        #expect(property.data.count == 0x50)
        #expect(property.offset == 46)
        #expect(property.strings == [tinyUSBGUIDText])
        #expect(set.declaredInterfaceGUIDs == [FirmwareGUID(guid: tinyUSBGUID, interfaceNumber: 2, source: .msOS20)])
    }

    @Test func setCheckedAgainstItsBOSInfo() throws {
        let info = try #require(BOSDescriptor.parse(tinyUSBBOS).msOS20DescriptorSet())
        #expect(MSOS20DescriptorSet.parse(tinyUSBSet, for: info).issues.isEmpty)
        let other = BOSDescriptor.MSOS20SetInfo(windowsVersion: 0x0A00_0000, descriptorSetTotalLength: 0xB0,
                                                vendorCode: 2, altEnumCode: 0)
        let mismatched = MSOS20DescriptorSet.parse(tinyUSBSet, for: other)
        #expect(mismatched.issues.map(\.kind) == [
            .unexpectedValue(field: "dwWindowsVersion", value: 0x0603_0000, expected: 0x0A00_0000),
            .unexpectedValue(field: "wTotalLength", value: 0xB2, expected: 0xB0),
        ])
        #expect(mismatched.declaredInterfaceGUIDs.count == 1)
        // Unreadable header: only the header's own issue.
        #expect(MSOS20DescriptorSet.parse(tinyUSBSet.prefix(4), for: other).issues.count == 1)
    }

    @Test func deviceLevelPropertiesAndLenientStrings() throws {
        // Device-level REG_SZ without its NUL, name in another case; a model ID
        // (defined, unused) and an unknown type are skipped by their length.
        let body = property20(type: 1, name: utf16("deviceinterfaceGUID"),
                              data: utf16("{0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9}", nuls: 0))
            + le16(20) + le16(0x06) + [UInt8](repeating: 0xAB, count: 16)
            + le16(6) + le16(0x42) + [1, 2]
            + le16(0x14) + le16(0x03) + id8("WINUSB") + id8("")
        let set = MSOS20DescriptorSet.parse(set20(body))
        #expect(set.issues == [.init(descriptor: .msOS20Set, offset: 10 + 126 + 20, kind: .unknownDescriptorType(0x42))])
        #expect(set.functions.isEmpty)
        #expect(set.device.compatibleIDs.map(\.compatibleID) == ["WINUSB"])
        #expect(set.declaredInterfaceGUIDs.map(\.guid.description) == ["{0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9}"])
        #expect(set.declaredInterfaceGUIDs.first?.interfaceNumber == nil)
    }

    @Test func guidValueProblemsAreIssuesNotCrashes() {
        let good = "{975F44D9-0D08-43FD-8B3E-127CA8AFFF9D}"
        // Multi-string: one bad GUID, one good, no closing double NUL.
        let multi = property20(type: 7, name: utf16("DeviceInterfaceGUIDs"),
                               data: utf16("not-a-guid") + utf16(good))
        // Odd data length.
        let odd = property20(type: 1, name: utf16("DeviceInterfaceGUID"), data: utf16(good) + [0x7B])
        // Wrong data type (REG_DWORD).
        let dword = property20(type: 4, name: utf16("DeviceInterfaceGUID"), data: [1, 0, 0, 0])
        // Name with an unpaired high surrogate: decoded with U+FFFD, not a GUID name.
        let surrogate = property20(type: 1, name: [0x00, 0xD8, 0x41, 0x00, 0, 0], data: utf16(good))
        // Odd name length.
        let oddName = property20(type: 1, name: [0x41, 0x00, 0x42], data: utf16(good))
        let function = le16(8) + le16(0x02) + [1, 0] + le16(8 + multi.count)
        let set = MSOS20DescriptorSet.parse(set20(function + multi + odd + dword + surrogate + oddName))
        #expect(set.declaredInterfaceGUIDs == [FirmwareGUID(guid: tinyUSBGUID, interfaceNumber: 1, source: .msOS20)])
        #expect(set.issues.map(\.kind) == [
            .multiStringNotTerminated, .invalidGUID(text: "not-a-guid"),
            .oddUTF16Length(field: "PropertyData", bytes: 79),
            .unsupportedPropertyType(name: "DeviceInterfaceGUID", type: 4),
            .oddUTF16Length(field: "PropertyName", bytes: 3),
        ])
        #expect(set.device.registryProperties.count == 4)
        #expect(set.device.registryProperties[2].name == "\u{FFFD}A")
        #expect(set.issues.allSatisfy { !$0.kind.isFatal })
    }

    @Test func setMalformed() {
        for n in 0 ..< tinyUSBSet.count {
            let set = MSOS20DescriptorSet.parse(tinyUSBSet.prefix(n))
            // A short read is reported as such, not as a lying length.
            #expect(set.issues.contains { if case .truncated = $0.kind { true } else { false } }, "prefix \(n)")
            #expect(set.issues.allSatisfy { if case .badLength = $0.kind { false } else { true } }, "prefix \(n)")
            #expect(set.declaredInterfaceGUIDs.isEmpty, "prefix \(n)")
        }
        func mutated(_ offset: Int, _ value: Int) -> MSOS20DescriptorSet {
            var b = tinyUSBSet
            b[offset] = UInt8(value & 0xFF); b[offset + 1] = UInt8(value >> 8)
            return MSOS20DescriptorSet.parse(b)
        }
        // Zero lengths anywhere stop the walk.
        for at in [0, 10, 18, 26, 46] {
            let set = mutated(at, 0)
            #expect(set.issues.last?.kind.isFatal == true, "zero wLength at \(at)")
        }
        // wTotalLength below the header, or above the bytes.
        #expect(mutated(8, 3).issues.last?.kind.isFatal == true)
        #expect(mutated(8, 0xFFFF).issues.last?.kind == .truncated(needed: 0xFFFF, available: 0xB2))
        // Subset lengths overrunning their parent.
        #expect(mutated(16, 0xB2).issues.last?.kind.isFatal == true)
        #expect(mutated(24, 0xA1).issues.last?.kind.isFatal == true)
        // Subset shorter than its own header.
        #expect(mutated(24, 4).issues.last?.kind.isFatal == true)
        // A function subset that ends before the property: the property is the device's.
        let short = mutated(24, 8 + 20)
        #expect(short.issues.isEmpty)
        #expect(short.declaredInterfaceGUIDs.first?.interfaceNumber == nil)
        // Property name / data lengths that lie: property dropped, walk goes on.
        let name = mutated(52, 0x2000)
        #expect(name.issues.map(\.kind) == [.countMismatch(field: "wPropertyNameLength", declared: 0x2000, found: 122)])
        let data = mutated(96, 0x52)
        #expect(data.issues.map(\.kind) == [.countMismatch(field: "wPropertyDataLength", declared: 0x52, found: 0x50)])
        #expect(data.functions[0].features.registryProperties.isEmpty)
        // Not a set header.
        #expect(mutated(2, 1).issues.first?.kind == .badHeader(field: "set header wDescriptorType", value: 1, expected: 0))
    }

    /// The composite-device shape of the MS OS 2.0 specification's example:
    /// one configuration subset holding two function subsets, each with a
    /// WINUSB compatible ID and a DeviceInterfaceGUIDs property; plus a second
    /// configuration subset, and a function subset nested inside another
    /// (not allowed: skipped with an issue).
    @Test func compositeFunctionsAndConfigurations() throws {
        func function(_ interface: UInt8, _ guid: String) -> [UInt8] {
            let features = le16(0x14) + le16(0x03) + id8("WINUSB") + id8("")
                + property20(type: 7, name: utf16("DeviceInterfaceGUIDs"), data: utf16(guid, nuls: 2))
            return le16(8) + le16(0x02) + [interface, 0] + le16(8 + features.count) + features
        }
        func configuration(_ index: UInt8, _ body: [UInt8]) -> [UInt8] {
            le16(8) + le16(0x01) + [index, 0] + le16(8 + body.count) + body
        }
        let guid0 = "{00000000-0000-0000-0000-0000000000a0}", guid1 = "{00000000-0000-0000-0000-0000000000a1}"
        let guid2 = "{00000000-0000-0000-0000-0000000000b0}"
        let set = try MSOS20DescriptorSet(validating: set20(configuration(0, function(0, guid0) + function(1, guid1))
                                                          + configuration(1, function(0, guid2))))
        #expect(set.functions.map(\.firstInterface) == [0, 1, 0])
        #expect(set.functions.map(\.configurationValue) == [0, 0, 1])
        #expect(set.functions.map { $0.features.compatibleIDs.map(\.compatibleID) } == [["WINUSB"], ["WINUSB"], ["WINUSB"]])
        #expect(set.declaredInterfaceGUIDs.map(\.guid.low) == [0xA0, 0xA1, 0xB0])
        #expect(set.declaredInterfaceGUIDs.map(\.interfaceNumber) == [0, 1, 0])

        // A function subset whose length covers a second function subset header.
        let inner = function(1, guid1)
        let outer = le16(8) + le16(0x02) + [0, 0] + le16(8 + inner.count) + inner
        let nested = MSOS20DescriptorSet.parse(set20(outer))
        #expect(nested.issues.map(\.kind) == [.misplacedDescriptor(type: 0x02)])
        #expect(nested.functions.map(\.firstInterface) == [0])
        #expect(nested.declaredInterfaceGUIDs.map(\.interfaceNumber) == [0])
    }

    // MARK: MS OS 1.0

    @Test func osStringDescriptor() {
        #expect(MSOS10.vendorCode(fromOSStringDescriptor: osString) == 0x20)
        #expect(MSOS10.vendorCode(fromOSStringDescriptor: osString + [9, 9]) == 0x20)
        for n in 0 ..< osString.count {
            #expect(MSOS10.vendorCode(fromOSStringDescriptor: osString.prefix(n)) == nil, "prefix \(n)")
        }
        for i in 0 ..< 16 {
            var b = osString
            b[i] ^= 0x01
            #expect(MSOS10.vendorCode(fromOSStringDescriptor: b) == nil, "flipped byte \(i)")
        }
    }

    @Test func extendedCompatIDRoundTrip() throws {
        let d = try MSOS10.ExtendedCompatID(validating: compatID)
        #expect(d.totalLength == 64)
        #expect(d.declaredCount == 2)
        #expect(d.functions.map(\.firstInterfaceNumber) == [0, 2])
        #expect(d.functions.map(\.id.compatibleID) == ["WINUSB", "RNDIS"])
        #expect(d.functions.map(\.id.subCompatibleID) == ["", "5162001"])
    }

    @Test func extendedCompatIDMalformed() {
        for n in 0 ..< compatID.count {
            let d = MSOS10.ExtendedCompatID.parse(compatID.prefix(n))
            #expect(!d.issues.isEmpty, "prefix \(n)")
            #expect(d.functions.count == max(0, n - 16) / 24, "prefix \(n)")
        }
        var count = compatID
        count[8] = 200 // bCount lies
        let c = MSOS10.ExtendedCompatID.parse(count)
        #expect(c.functions.count == 2)
        #expect(c.issues.map(\.kind) == [.countMismatch(field: "bCount", declared: 200, found: 2)])
        var zero = compatID
        zero[0] = 0
        #expect(MSOS10.ExtendedCompatID.parse(zero).issues.first?.kind.isFatal == true)
        var huge = compatID
        huge[3] = 0xFF
        #expect(MSOS10.ExtendedCompatID.parse(huge).functions.count == 2)
        var index = compatID
        index[6] = 5
        #expect(MSOS10.ExtendedCompatID.parse(index).issues.first?.kind
                == .badHeader(field: "wIndex", value: 5, expected: 4))
    }

    @Test func extendedPropertiesRoundTrip() throws {
        let d = try MSOS10.ExtendedProperties(validating: winUSBProperties, interfaceNumber: 3)
        #expect(d.totalLength == 142)
        #expect(d.declaredCount == 1)
        #expect(d.properties.map(\.name) == ["DeviceInterfaceGUID"])
        #expect(d.properties.map(\.dataType) == [1])
        #expect(d.properties.first?.strings == [tinyUSBGUIDText])
        #expect(d.declaredInterfaceGUIDs == [FirmwareGUID(guid: tinyUSBGUID, interfaceNumber: 3, source: .msOS10)])
        // Several sections, the GUIDs one a REG_MULTI_SZ with two GUIDs.
        let two = utf16(tinyUSBGUIDText) + utf16("{00000000-0000-0000-0000-000000000001}") + [0, 0]
        let multi = properties10([section10(type: 4, name: utf16("Label"), data: [1, 0, 0, 0]),
                                  section10(type: 7, name: utf16("DEVICEINTERFACEGUIDS"), data: two)])
        let m = try MSOS10.ExtendedProperties(validating: multi, interfaceNumber: nil)
        #expect(m.declaredInterfaceGUIDs.map(\.guid) == [tinyUSBGUID, GUID(high: 0, low: 1)])
        #expect(m.properties.map(\.name) == ["Label", "DEVICEINTERFACEGUIDS"])
    }

    @Test func extendedPropertiesMalformed() {
        for n in 0 ..< winUSBProperties.count {
            let d = MSOS10.ExtendedProperties.parse(winUSBProperties.prefix(n), interfaceNumber: 0)
            #expect(!d.issues.isEmpty, "prefix \(n)")
            #expect(d.declaredInterfaceGUIDs.isEmpty, "prefix \(n)")
        }
        func mutated(_ offset: Int, _ bytes: [UInt8]) -> MSOS10.ExtendedProperties {
            var b = winUSBProperties
            b.replaceSubrange(offset ..< offset + bytes.count, with: bytes)
            return MSOS10.ExtendedProperties.parse(b, interfaceNumber: 0)
        }
        #expect(mutated(10, le32(0)).issues.last?.kind.isFatal == true) // dwSize 0
        #expect(mutated(10, le32(0xFFFF_FFFF)).issues.last?.kind.isFatal == true) // dwSize huge
        #expect(mutated(0, le32(0xFFFF_FFFF)).issues.last?.kind
                == .truncated(needed: Int(UInt32.max), available: 142)) // dwLength huge
        #expect(mutated(18, le16(0xFFFF)).issues.first?.kind
                == .countMismatch(field: "wPropertyNameLength", declared: 0xFFFF, found: 118))
        #expect(mutated(60, le32(0x1_0000)).issues.first?.kind
                == .countMismatch(field: "dwPropertyDataLength", declared: 0x1_0000, found: 78))
        #expect(mutated(8, le16(9)).issues.map(\.kind) == [.countMismatch(field: "wCount", declared: 9, found: 1)])
        #expect(mutated(0, le32(5)).issues.first?.kind.isFatal == true)
        // Odd data length (data length 77 inside a section sized for it).
        let odd = properties10([section10(type: 1, name: utf16("DeviceInterfaceGUID"),
                                          data: Array(utf16(tinyUSBGUIDText).dropLast()))])
        #expect(MSOS10.ExtendedProperties.parse(odd, interfaceNumber: 0).issues.map(\.kind)
                == [.oddUTF16Length(field: "PropertyData", bytes: 77)])
    }

    // MARK: Random mutation

    /// Thousands of seeded mutations of every valid input through every
    /// parser: no trap, and results bounded by the input size.
    @Test func seededMutationsNeverTrapAndStayBounded() {
        var random = SplitMix64(seed: 0x4D53_4F53_2E30)
        let seeds: [[UInt8]] = [tinyUSBBOS, tinyUSBSet, osString, compatID, winUSBProperties]
        var parsed = 0
        for _ in 0 ..< 3000 {
            var b = seeds[Int(random.next() % UInt64(seeds.count))]
            for _ in 0 ... random.next() % 4 {
                let choice = random.next() % 5
                let at = b.isEmpty ? 0 : Int(random.next() % UInt64(b.count))
                switch choice {
                case 0 where !b.isEmpty: b[at] = UInt8(truncatingIfNeeded: random.next())
                case 1 where !b.isEmpty: b[at] = [0, 1, 0xFF, 0x7F, 0x80][Int(random.next() % 5)]
                case 2: b = Array(b.prefix(at))
                case 3: b.insert(contentsOf: [UInt8](repeating: UInt8(truncatingIfNeeded: random.next()),
                                                     count: Int(random.next() % 8)), at: at)
                default: if !b.isEmpty { b.remove(at: at) }
                }
            }
            let n = b.count
            let bos = BOSDescriptor.parse(b)
            #expect(bos.capabilities.count <= n / 3 && bos.msOS20DescriptorSets.count <= n / 8
                    && bos.issues.count <= n / 3 + 4)
            let set = MSOS20DescriptorSet.parse(b)
            #expect(set.functions.count <= n / 8 && set.declaredInterfaceGUIDs.count <= n / 72
                    && set.issues.count <= n + 4)
            let compat = MSOS10.ExtendedCompatID.parse(b)
            #expect(compat.functions.count <= n / 24 && compat.issues.count <= 3)
            let props = MSOS10.ExtendedProperties.parse(b, interfaceNumber: 0)
            #expect(props.properties.count <= n / 14 && props.declaredInterfaceGUIDs.count <= n / 72
                    && props.issues.count <= n + 4)
            _ = MSOS10.vendorCode(fromOSStringDescriptor: b)
            parsed += 1
        }
        #expect(parsed == 3000)
    }
}

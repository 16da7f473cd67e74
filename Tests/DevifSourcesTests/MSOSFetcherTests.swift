// The MS OS fetch against fake devices: what it asks, in which order, and
// what it makes of honest, stalling, slow and lying answers. MS OS 2.0 runs
// here with TinyUSB's published webusb_serial bytes, because the lab kernel
// cannot answer a BOS platform capability (see Tests/LabSuite/FirmwareGUIDTests.swift).
@testable import DevifUSB
import CLibUSB
import DevifCore
import Foundation
import Testing

private func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
private func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
private func utf16(_ text: String, nuls: Int = 1) -> [UInt8] {
    text.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] } + [UInt8](repeating: 0, count: 2 * nuls)
}
private func id8(_ text: String) -> [UInt8] { Array(text.utf8) + [UInt8](repeating: 0, count: 8 - text.utf8.count) }

/// TinyUSB examples/device/webusb_serial/src/usb_descriptors.c: desc_bos
/// (WebUSB vendor code 1, MS OS 2.0 set 0xB2 bytes with vendor code 2) and
/// desc_ms_os_20 (function subset for interface 2, WINUSB, DeviceInterfaceGUIDs).
private enum TinyUSB {
    static let guid = GUID(high: 0x975F_44D9_0D08_43FD, low: 0x8B3E_127C_A8AF_FF9D)
    static let bos: [UInt8] = {
        let webUSB: [UInt8] = [24, 0x10, 0x05, 0x00, 0x38, 0xB6, 0x08, 0x34, 0xA9, 0x09, 0xA0, 0x47,
                               0x8B, 0xFD, 0xA0, 0x76, 0x88, 0x15, 0xB6, 0x65] + le16(0x0100) + [1, 1]
        let msOS20: [UInt8] = [28, 0x10, 0x05, 0x00, 0xDF, 0x60, 0xDD, 0xD8, 0x89, 0x45, 0xC7, 0x4C,
                               0x9C, 0xD2, 0x65, 0x9D, 0x9E, 0x64, 0x8A, 0x9F] + le32(0x0603_0000) + le16(0xB2) + [2, 0]
        return [5, 0x0F] + le16(5 + webUSB.count + msOS20.count) + [2] + webUSB + msOS20
    }()
    static let set: [UInt8] = {
        let total = 0xB2
        var s = le16(0x0A) + le16(0) + le32(0x0603_0000) + le16(total)
        s += le16(8) + le16(1) + [0, 0] + le16(total - 0x0A)
        s += le16(8) + le16(2) + [2, 0] + le16(total - 0x12)
        s += le16(0x14) + le16(3) + id8("WINUSB") + id8("")
        let name = utf16("DeviceInterfaceGUIDs"), data = utf16("{975F44D9-0D08-43FD-8B3E-127CA8AFFF9D}", nuls: 2)
        s += le16(total - 0x2E) + le16(4) + le16(7) + le16(name.count) + name + le16(data.count) + data
        return s
    }()
}

/// What Linux's composite gadget sends for a configfs os_desc with one
/// FunctionFS interface declaring a REG_SZ DeviceInterfaceGUID (seen in the lab).
private enum Composite {
    static let guidText = "{8f3b2c1d-0a9e-4d7b-b6c5-1e2f3a4b5c6d}"
    static let osString: [UInt8] = [0x12, 0x03] + utf16("MSFT100", nuls: 0) + [0xCD, 0x00]
    static let compat: [UInt8] = le32(40) + le16(0x0100) + le16(4) + [1] + [UInt8](repeating: 0, count: 7)
        + [0, 1] + id8("WINUSB") + id8("") + [UInt8](repeating: 0, count: 6)
    static let properties: [UInt8] = {
        let name = utf16("DeviceInterfaceGUID"), data = utf16(guidText)
        let section = le32(14 + name.count + data.count) + le32(1) + le16(name.count) + name + le32(data.count) + data
        return le32(10 + section.count) + le16(0x0100) + le16(5) + le16(1) + section
    }()
}

/// A fake default control pipe: answers from a table keyed by the setup
/// fields, records every request.
private struct FakeDevice: ControlPipe {
    struct Setup: Hashable, CustomStringConvertible {
        var type: UInt8, request: UInt8, value: UInt16, index: UInt16
        var description: String { String(format: "%02x %02x %04x %04x", type, request, value, index) }
    }
    enum Answer { case bytes([UInt8]), error(Int32) }
    var answers: [Setup: Answer] = [:]
    var requests: [(Setup, Int)] = []
    var timeouts: [Int] = []

    mutating func controlIn(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, length: Int,
                            timeoutMilliseconds: Int) throws(USBError) -> [UInt8] {
        let setup = Setup(type: requestType, request: request, value: value, index: index)
        requests.append((setup, length))
        timeouts.append(timeoutMilliseconds)
        switch answers[setup] ?? .error(LIBUSB_ERROR_PIPE.rawValue) {
        case .bytes(let b): return Array(b.prefix(length))
        case .error(let code): throw USBError(libusbCode: code, operation: "fake control transfer")
        }
    }

    var asked: [String] { requests.map { "\($0.0) len \($0.1)" } }
    func count(_ type: UInt8, _ request: UInt8, _ value: UInt16, _ index: UInt16) -> Int {
        requests.filter { $0.0 == Setup(type: type, request: request, value: value, index: index) }.count
    }

    static let bos = Setup(type: 0x80, request: 6, value: 0x0F00, index: 0)
    static let osString = Setup(type: 0x80, request: 6, value: 0x03EE, index: 0)
    static func set(_ code: UInt8) -> Setup { Setup(type: 0xC0, request: code, value: 0, index: 7) }
    static func compat(_ code: UInt8) -> Setup { Setup(type: 0xC0, request: code, value: 0, index: 4) }
    static func properties(_ code: UInt8, _ interface: UInt16) -> Setup {
        Setup(type: 0xC1, request: code, value: interface, index: 5)
    }
}

private let tinyUSBFacts = MSOSDeviceFacts(vendorID: 0xCAFE, productID: 0x4011, bcdDevice: 0x0100, bcdUSB: 0x0210)
private let gadgetFacts = MSOSDeviceFacts(vendorID: 0x1209, productID: 0x0f01, bcdDevice: 0x0100, bcdUSB: 0x0200)
private let allowGadget = [MSOS10ProbeRule(vendorID: 0x1209, productID: 0x0f01)]

private func fetcher(probes: [MSOS10ProbeRule] = [], memory: MSOS10ProbeMemory? = nil,
                     budget: Duration = .seconds(2)) -> MSOSFetcher {
    MSOSFetcher(settings: .init(requestTimeoutMilliseconds: 300, budget: budget, msOS10Probes: probes, memory: memory))
}

private func composite() -> FakeDevice {
    var d = FakeDevice()
    d.answers[FakeDevice.osString] = .bytes(Composite.osString)
    d.answers[FakeDevice.compat(0xCD)] = .bytes(Composite.compat)
    d.answers[FakeDevice.properties(0xCD, 0)] = .bytes(Composite.properties)
    return d
}

@Suite struct MSOSFetcherTests {
    @Test func msOS20FromTinyUSBBytes() throws {
        var device = FakeDevice()
        device.answers[FakeDevice.bos] = .bytes(TinyUSB.bos)
        device.answers[FakeDevice.set(2)] = .bytes(TinyUSB.set)
        let outcome = fetcher(probes: [.any]).fetch(&device, device: tinyUSBFacts)
        #expect(outcome.guids == [FirmwareGUID(guid: TinyUSB.guid, interfaceNumber: 2, source: .msOS20)])
        #expect(outcome.notes.isEmpty, "\(outcome.notes)")
        #expect(outcome.readMSOS20Set && !outcome.askedOSString, "a device with a 2.0 set is not asked for 0xEE")
        #expect(device.asked == ["80 06 0f00 0000 len 5", "80 06 0f00 0000 len 57", "c0 02 0000 0007 len 178"])
        #expect(device.timeouts.allSatisfy { $0 > 0 && $0 <= 300 })
    }

    @Test func noBOSBelowUSB21AndNoProbeWithoutPermission() {
        var device = composite()
        device.answers[FakeDevice.bos] = .bytes(TinyUSB.bos)
        let outcome = fetcher().fetch(&device, device: gadgetFacts)
        #expect(device.requests.isEmpty, "asked \(device.asked)")
        #expect(outcome.guids.isEmpty && outcome.notes.isEmpty)
    }

    @Test func msOS10AskedOnceThenFromMemory() throws {
        let memory = MSOS10ProbeMemory(store: InMemoryRegistryStore())
        var first = composite()
        let a = fetcher(probes: allowGadget, memory: memory).fetch(&first, device: gadgetFacts)
        let expected = FirmwareGUID(guid: try GUID(parsing: Composite.guidText), interfaceNumber: 0, source: .msOS10)
        #expect(a.guids == [expected])
        #expect(a.notes.isEmpty, "\(a.notes)")
        #expect(a.askedOSString)
        #expect(first.asked == ["80 06 03ee 0000 len 18", "c0 cd 0000 0004 len 16", "c0 cd 0000 0004 len 40",
                                "c1 cd 0000 0005 len 10", "c1 cd 0000 0005 len \(Composite.properties.count)"])
        #expect(try memory.answer(vendorID: 0x1209, productID: 0x0f01, bcdDevice: 0x0100) == .present(vendorCode: 0xCD))

        var second = composite()
        let b = fetcher(probes: allowGadget, memory: memory).fetch(&second, device: gadgetFacts)
        #expect(b.guids == [expected])
        #expect(!b.askedOSString && second.count(0x80, 6, 0x03EE, 0) == 0, "string 0xEE asked again")
    }

    @Test func aStallOrGarbageForTheOSStringIsRememberedAsAbsent() throws {
        for answer in [FakeDevice.Answer.error(LIBUSB_ERROR_PIPE.rawValue), .bytes([0x12, 0x03] + utf16("MSFT200", nuls: 0) + [1, 0]),
                       .bytes([4, 3, 0x41, 0]), .bytes([])] {
            let memory = MSOS10ProbeMemory(store: InMemoryRegistryStore())
            var device = FakeDevice()
            device.answers[FakeDevice.osString] = answer
            let outcome = fetcher(probes: allowGadget, memory: memory).fetch(&device, device: gadgetFacts)
            #expect(outcome.guids.isEmpty)
            #expect(device.requests.count == 1, "only string 0xEE: \(device.asked)")
            #expect(try memory.answer(vendorID: 0x1209, productID: 0x0f01, bcdDevice: 0x0100) == .absent)
        }
    }

    @Test func aBOSWithoutMSOS20IsRememberedSoTheModelIsNotAskedAgain() throws {
        let memory = MSOS10ProbeMemory(store: InMemoryRegistryStore())
        // USB 2.0 extension capability only (what LPM devices send).
        let bos: [UInt8] = [5, 0x0F] + le16(12) + [1] + [7, 0x10, 2] + le32(6)
        var first = FakeDevice()
        first.answers[FakeDevice.bos] = .bytes(bos)
        let a = fetcher(memory: memory).fetch(&first, device: tinyUSBFacts)
        #expect(a.msOS20Absent && a.guids.isEmpty && a.notes.isEmpty, "\(a.notes)")
        #expect(first.requests.count == 2)
        #expect(try memory.msOS20Absent(vendorID: 0xCAFE, productID: 0x4011, bcdDevice: 0x0100))
        var second = FakeDevice()
        second.answers[FakeDevice.bos] = .bytes(bos)
        _ = fetcher(memory: memory).fetch(&second, device: tinyUSBFacts)
        #expect(second.requests.isEmpty, "asked again: \(second.asked)")
        // A malformed BOS is not remembered: it may have been a transfer problem.
        let other = MSOS10ProbeMemory(store: InMemoryRegistryStore())
        var broken = FakeDevice()
        broken.answers[FakeDevice.bos] = .bytes([5, 0x0F] + le16(12) + [1] + [0, 0x10, 2])
        _ = fetcher(memory: other).fetch(&broken, device: tinyUSBFacts)
        #expect(try !other.msOS20Absent(vendorID: 0xCAFE, productID: 0x4011, bcdDevice: 0x0100))
    }

    @Test func aTimeoutStopsEverythingAfterIt() throws {
        var device = FakeDevice()
        device.answers[FakeDevice.bos] = .error(LIBUSB_ERROR_TIMEOUT.rawValue)
        device.answers[FakeDevice.osString] = .bytes(Composite.osString)
        let outcome = fetcher(probes: [.any]).fetch(&device, device: tinyUSBFacts)
        #expect(device.requests.count == 1, "asked after a timeout: \(device.asked)")
        #expect(outcome.notes.count == 1 && outcome.notes[0].contains("BOS descriptor"), "\(outcome.notes)")
        #expect(outcome.guids.isEmpty)
    }

    @Test func aDeviceGoneIsNotRememberedAsAbsent() throws {
        let memory = MSOS10ProbeMemory(store: InMemoryRegistryStore())
        var device = FakeDevice()
        device.answers[FakeDevice.osString] = .error(LIBUSB_ERROR_NO_DEVICE.rawValue)
        let outcome = fetcher(probes: allowGadget, memory: memory).fetch(&device, device: gadgetFacts)
        #expect(outcome.guids.isEmpty && outcome.notes.count == 1)
        #expect(try memory.answer(vendorID: 0x1209, productID: 0x0f01, bcdDevice: 0x0100) == nil)
    }

    @Test func lyingLengthsAreBoundedAndReported() throws {
        // BOS claiming 64 KiB, a platform capability claiming a 3-byte set,
        // an extended compat ID claiming 1 MiB: nothing is asked beyond 4096
        // bytes, each problem is a note, nothing throws or traps.
        var hugeBOS = TinyUSB.bos
        hugeBOS[2] = 0xFF; hugeBOS[3] = 0xFF
        var device = FakeDevice()
        device.answers[FakeDevice.bos] = .bytes(hugeBOS)
        let a = fetcher().fetch(&device, device: tinyUSBFacts)
        #expect(a.notes.contains { $0.contains("wTotalLength 65535") }, "\(a.notes)")
        #expect(device.requests.count == 1)

        var tinySet = TinyUSB.bos
        tinySet[tinySet.count - 4] = 3; tinySet[tinySet.count - 3] = 0
        device = FakeDevice()
        device.answers[FakeDevice.bos] = .bytes(tinySet)
        let b = fetcher().fetch(&device, device: tinyUSBFacts)
        #expect(b.notes.contains { $0.contains("descriptor set length of 3") }, "\(b.notes)")
        #expect(device.count(0xC0, 2, 0, 7) == 0)

        device = composite()
        var hugeCompat = Composite.compat
        hugeCompat[0] = 0; hugeCompat[1] = 0; hugeCompat[2] = 0x10
        device.answers[FakeDevice.compat(0xCD)] = .bytes(hugeCompat)
        let c = fetcher(probes: allowGadget).fetch(&device, device: gadgetFacts)
        #expect(c.notes.contains { $0.contains("dwLength 1048576") }, "\(c.notes)")
        #expect(device.requests.allSatisfy { $0.1 <= MSOSFetcher.maximumLength })
        // With no function list, interface 0's properties are still read.
        #expect(c.guids.count == 1)
    }

    @Test func aMalformedSetGivesNotesAndWhatParsed() throws {
        var truncated = TinyUSB.set
        truncated.removeLast(30)
        var device = FakeDevice()
        device.answers[FakeDevice.bos] = .bytes(TinyUSB.bos)
        device.answers[FakeDevice.set(2)] = .bytes(truncated)
        let outcome = fetcher().fetch(&device, device: tinyUSBFacts)
        #expect(!outcome.notes.isEmpty)
        #expect(outcome.notes.allSatisfy { $0.hasPrefix("MS OS 2.0") }, "\(outcome.notes)")
        #expect(outcome.guids.isEmpty, "a property cut short declares nothing")
    }

    @Test func theBudgetBoundsTheWholeFetch() throws {
        let memory = MSOS10ProbeMemory(store: InMemoryRegistryStore())
        var device = composite()
        let outcome = fetcher(probes: allowGadget, memory: memory, budget: .zero).fetch(&device, device: gadgetFacts)
        #expect(device.requests.isEmpty, "asked past the budget: \(device.asked)")
        #expect(outcome.notes.count == 1 && outcome.notes[0].contains("time budget"), "\(outcome.notes)")
        #expect(try memory.answer(vendorID: 0x1209, productID: 0x0f01, bcdDevice: 0x0100) == nil,
                "no answer from the device: nothing remembered")
    }
}

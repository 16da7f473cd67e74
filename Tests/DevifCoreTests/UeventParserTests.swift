import Testing
@testable import DevifCore

@Suite struct UeventParserTests {
    static let hidrawPath = "/devices/virtual/misc/uhid/0006:1209:0001.0001/hidraw/hidraw0"

    static func message(_ fields: [String]) -> [UInt8] {
        Array(fields.joined(separator: "\0").utf8) + [0]
    }

    @Test func kernelAddMessage() throws {
        let raw = Self.message(["add@\(Self.hidrawPath)", "ACTION=add", "DEVPATH=\(Self.hidrawPath)",
                                "SUBSYSTEM=hidraw", "MAJOR=241", "MINOR=0", "DEVNAME=hidraw0", "SEQNUM=2345"])
        let event = try Uevent(netlinkMessage: raw)
        #expect(event.action == "add")
        #expect(event.devpath == Self.hidrawPath)
        #expect(event.subsystem == "hidraw")
        #expect(event.devname == "hidraw0")
        #expect(event.devtmpfsNode == "/dev/hidraw0")
        #expect(event.sequenceNumber == 2345)
        #expect(event["MAJOR"] == "241" && event["NOPE"] == nil)
    }

    @Test func messageWithoutTrailingNulAndWithEmptyValue() throws {
        let raw = Array("remove@/devices/x\0ACTION=remove\0HID_UNIQ=".utf8)
        let event = try Uevent(netlinkMessage: raw)
        #expect(event.action == "remove" && event["HID_UNIQ"] == "")
    }

    @Test func rejectsUdevAndMalformedMessages() {
        #expect(throws: UeventParseError.udevMessage) {
            try Uevent(netlinkMessage: Self.message(["libudev", "junk"]))
        }
        #expect(throws: UeventParseError.empty) { try Uevent(netlinkMessage: [UInt8]()) }
        #expect(throws: UeventParseError.badHeader) { try Uevent(netlinkMessage: Self.message(["add-/devices/x"])) }
        #expect(throws: UeventParseError.badHeader) { try Uevent(netlinkMessage: Self.message(["add@devices/x"])) }
        #expect(throws: UeventParseError.badHeader) { try Uevent(netlinkMessage: Self.message(["@/devices/x"])) }
        #expect(throws: UeventParseError.badProperty("NOEQUALS")) {
            try Uevent(netlinkMessage: Self.message(["add@/devices/x", "NOEQUALS"]))
        }
        #expect(throws: UeventParseError.badProperty("=value")) {
            try Uevent(netlinkMessage: Self.message(["add@/devices/x", "=value"]))
        }
        #expect(throws: UeventParseError.badProperty("BAD KEY")) {
            try Uevent(netlinkMessage: Self.message(["add@/devices/x", "BAD KEY=1"]))
        }
        #expect(throws: UeventParseError.inconsistent("ACTION")) {
            try Uevent(netlinkMessage: Self.message(["add@/devices/x", "ACTION=remove"]))
        }
        #expect(throws: UeventParseError.inconsistent("DEVPATH")) {
            try Uevent(netlinkMessage: Self.message(["add@/devices/x", "DEVPATH=/devices/y"]))
        }
        #expect(throws: UeventParseError.tooLarge(Uevent.maximumMessageBytes + 1)) {
            try Uevent(netlinkMessage: [UInt8](repeating: 65, count: Uevent.maximumMessageBytes + 1))
        }
        let many = ["add@/devices/x"] + (0...Uevent.maximumProperties).map { "K\($0)=v" }
        #expect(throws: UeventParseError.tooManyProperties(Uevent.maximumProperties + 1)) {
            try Uevent(netlinkMessage: Self.message(many))
        }
    }

    @Test func invalidUTF8InValuesBecomesReplacementCharacters() throws {
        let raw = Array("add@/devices/x\0HID_NAME=".utf8) + [0x41, 0xFF, 0xC3] + [0]
        let event = try Uevent(netlinkMessage: raw)
        #expect(event["HID_NAME"] == "A\u{FFFD}\u{FFFD}")
    }

    @Test func devtmpfsNodeRefusesEscapingNames() {
        func node(_ name: String) -> String? { Uevent(action: "add", devpath: "/x", properties: [("DEVNAME", name)]).devtmpfsNode }
        #expect(node("bus/usb/001/002") == "/dev/bus/usb/001/002")
        #expect(node("../etc/passwd") == nil)
        #expect(node("/etc/passwd") == nil)
        #expect(node("a//b") == nil)
        #expect(node("") == nil)
    }

    @Test func sysfsUeventFile() throws {
        let text = """
            DRIVER=hid-generic
            HID_ID=0003:00001209:0000C0DE
            HID_NAME=Lab HID
            HID_PHYS=usb-dummy_hcd.0-1/input0
            HID_UNIQ=SER-0001
            MODALIAS=hid:b0003g0001v00001209p0000C0DE

            """
        let event = try Uevent(ueventFile: Array(text.utf8))
        #expect(event.action == "" && event.properties.count == 6)
        #expect(event["HID_PHYS"] == "usb-dummy_hcd.0-1/input0")
        let id = try #require(event["HID_ID"].flatMap(KernelHIDID.init(parsing:)))
        #expect(id == KernelHIDID(bus: .usb, vendorID: 0x1209, productID: 0xC0DE))
    }

    @Test func kernelHIDID() {
        #expect(KernelHIDID(parsing: "0006:00001209:00000001") == KernelHIDID(bus: .virtual, vendorID: 0x1209, productID: 1))
        #expect(KernelHIDID(parsing: "0005:0000046D:0000B01A")?.bus == .bluetooth)
        #expect(KernelHIDID(parsing: "0003:00011209:00000001") == nil)  // vendor over 16 bits
        #expect(KernelHIDID(parsing: "0003:1209") == nil)
        #expect(KernelHIDID(parsing: "0003:00001209:0000000g") == nil)
        #expect(KernelHIDID(parsing: "") == nil)
    }

    @Test func errorDescriptionsAreReadable() {
        #expect(UeventParseError.udevMessage.description.contains("udevd"))
        #expect(UeventParseError.badProperty("X").description.contains("KEY=VALUE"))
    }
}

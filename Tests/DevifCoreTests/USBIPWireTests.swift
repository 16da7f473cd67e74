import Testing
@testable import DevifCore

@Suite struct USBIPWireTests {
    static let keyboard = USBIPExportedDevice(
        path: "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1.2", busID: "1-1.2", busNumber: 1, deviceNumber: 5,
        speed: 2, vendorID: 0x046D, productID: 0xC31C, bcdDevice: 0x6400, deviceClass: 0, deviceSubClass: 0,
        deviceProtocol: 0, configurationValue: 1, numberOfConfigurations: 1, numberOfInterfaces: 2,
        interfaces: [.init(interfaceClass: 3, interfaceSubClass: 1, interfaceProtocol: 1),
                     .init(interfaceClass: 3, interfaceSubClass: 0, interfaceProtocol: 0)])
    static let disk = USBIPExportedDevice(
        path: "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-3", busID: "2-3", busNumber: 2, deviceNumber: 7,
        speed: 5, vendorID: 0x0781, productID: 0x5581, bcdDevice: 0x0100, deviceClass: 0, deviceSubClass: 0,
        deviceProtocol: 0, configurationValue: 1, numberOfConfigurations: 1, numberOfInterfaces: 1,
        interfaces: [.init(interfaceClass: 8, interfaceSubClass: 6, interfaceProtocol: 0x50)])

    static func header(version: UInt16 = 0x0111, code: UInt16, status: UInt32 = 0) -> [UInt8] {
        [UInt8(version >> 8), UInt8(version & 0xFF), UInt8(code >> 8), UInt8(code & 0xFF),
         UInt8(status >> 24), UInt8(status >> 16 & 0xFF), UInt8(status >> 8 & 0xFF), UInt8(status & 0xFF)]
    }

    /// Feeds `bytes` in reads of at most `chunk` bytes and at most what the
    /// reader wants; the result, or nil when the bytes ran out first.
    static func read<R>(_ bytes: [UInt8], chunk: Int = .max, wanted: () -> Int,
                        consume: ([UInt8]) throws(USBIPWireError) -> R?) throws(USBIPWireError) -> R? {
        var offset = 0
        while offset < bytes.count, wanted() > 0 {
            let n = min(chunk, wanted(), bytes.count - offset)
            defer { offset += n }
            if let result = try consume(Array(bytes[offset ..< offset + n])) { return result }
        }
        return nil
    }

    static func deviceList(_ bytes: [UInt8], chunk: Int = .max) throws(USBIPWireError) -> [USBIPExportedDevice]? {
        var reader = USBIPDeviceListReader()
        return try read(bytes, chunk: chunk, wanted: { reader.bytesWanted }, consume: { bytes throws(USBIPWireError) in try reader.consume(bytes) })
    }

    static func importReply(_ bytes: [UInt8], busID: String, chunk: Int = .max) throws(USBIPWireError) -> USBIPExportedDevice? {
        var reader = USBIPImportReader(busID: busID)
        return try read(bytes, chunk: chunk, wanted: { reader.bytesWanted }, consume: { bytes throws(USBIPWireError) in try reader.consume(bytes) })
    }

    /// A device record with these raw string fields.
    static func deviceBytes(path: [UInt8], busID: [UInt8]) -> [UInt8] {
        var bytes = USBIPWire.importReply(device: keyboard).dropFirst(8).map { $0 }
        bytes.replaceSubrange(0 ..< 256, with: path + [UInt8](repeating: 0, count: 256 - path.count))
        bytes.replaceSubrange(256 ..< 288, with: busID + [UInt8](repeating: 0, count: 32 - busID.count))
        return bytes
    }

    // MARK: Requests

    @Test func requestBytes() throws {
        #expect(USBIPWire.deviceListRequest == [0x01, 0x11, 0x80, 0x05, 0, 0, 0, 0])
        let request = try USBIPWire.importRequest(busID: "1-1.2")
        #expect(request.count == 40)
        #expect(request == [0x01, 0x11, 0x80, 0x03, 0, 0, 0, 0] + Array("1-1.2".utf8) + [UInt8](repeating: 0, count: 27))
        let longest = String(repeating: "9", count: 31)
        #expect(try USBIPWire.importRequest(busID: longest)[8 ..< 40] == ArraySlice(Array(longest.utf8) + [0]))
    }

    @Test func importRequestRejectsUnsendableBusIDs() {
        for busID in ["", String(repeating: "1", count: 32), String(repeating: "é", count: 16), "1-1\u{0}2"] {
            #expect(throws: USBIPWireError.invalidBusID(busID)) { try USBIPWire.importRequest(busID: busID) }
        }
        #expect("\(USBIPWireError.invalidBusID("1-1\u{0}"))".contains("\\u{0}"), "the NUL is shown escaped")
    }

    // MARK: Device list

    @Test func deviceListRoundTrips() throws {
        let bytes = USBIPWire.deviceListReply([Self.keyboard, Self.disk])
        #expect(bytes.count == 8 + 4 + 312 + 2 * 4 + 312 + 4)
        #expect(try Self.deviceList(bytes) == [Self.keyboard, Self.disk])
        #expect(try Self.deviceList(bytes, chunk: 1) == [Self.keyboard, Self.disk])
        #expect(try Self.deviceList(bytes, chunk: 5) == [Self.keyboard, Self.disk])

        // Asked for exactly the structures, in order, and nothing past the reply.
        var reader = USBIPDeviceListReader()
        var wanted: [Int] = []
        var offset = 0
        var devices: [USBIPExportedDevice]?
        while devices == nil {
            wanted.append(reader.bytesWanted)
            devices = try reader.consume(Array(bytes[offset ..< offset + reader.bytesWanted]))
            offset += wanted.last!
        }
        #expect(wanted == [8, 4, 312, 8, 312, 4])
        #expect(offset == bytes.count && reader.bytesWanted == 0)
        #expect(try reader.consume([]) == nil)
        #expect(throws: USBIPWireError.tooManyBytes(given: 1, wanted: 0)) { try reader.consume([0]) }

        let device = try #require(devices?.first)
        #expect(device.knownSpeed == .full && devices?.last?.knownSpeed == .superSpeed)
        #expect(device.deviceID == 0x0001_0005)
    }

    @Test func emptyListsAndDevicesWithoutInterfaces() throws {
        #expect(try Self.deviceList(USBIPWire.deviceListReply([])) == [])
        var bare = Self.disk
        bare.numberOfInterfaces = 0
        bare.interfaces = []
        #expect(try Self.deviceList(USBIPWire.deviceListReply([bare, Self.keyboard, bare])) == [bare, Self.keyboard, bare])
    }

    @Test func truncatedRepliesWantMoreAtEveryLength() throws {
        let list = USBIPWire.deviceListReply([Self.keyboard, Self.disk])
        let imported = USBIPWire.importReply(device: Self.disk)
        for chunk in [1, 7, .max] {
            for length in 0 ..< list.count {
                var reader = USBIPDeviceListReader()
                let result = try Self.read(Array(list.prefix(length)), chunk: chunk, wanted: { reader.bytesWanted },
                                           consume: { bytes throws(USBIPWireError) in try reader.consume(bytes) })
                #expect(result == nil && reader.bytesWanted > 0, "list cut at \(length)")
            }
            for length in 0 ..< imported.count {
                var reader = USBIPImportReader(busID: "2-3")
                let result = try Self.read(Array(imported.prefix(length)), chunk: chunk, wanted: { reader.bytesWanted },
                                           consume: { bytes throws(USBIPWireError) in try reader.consume(bytes) })
                #expect(result == nil && reader.bytesWanted > 0, "import reply cut at \(length)")
            }
        }
        #expect(try Self.importReply(imported, busID: "2-3") == USBIPExportedDevice(
            path: Self.disk.path, busID: "2-3", busNumber: 2, deviceNumber: 7, speed: 5, vendorID: 0x0781,
            productID: 0x5581, bcdDevice: 0x0100, deviceClass: 0, deviceSubClass: 0, deviceProtocol: 0,
            configurationValue: 1, numberOfConfigurations: 1, numberOfInterfaces: 1))
    }

    @Test func wrongVersionOrOperation() throws {
        let tail = Array(USBIPWire.deviceListReply([Self.keyboard]).dropFirst(8))
        #expect(throws: USBIPWireError.unexpectedVersion(received: 0x0106, operation: 0x0005)) {
            try Self.deviceList(Self.header(version: 0x0106, code: 0x0005) + tail)
        }
        // An HTTP server, say: the first bytes already tell.
        #expect(throws: USBIPWireError.unexpectedVersion(received: 0x4854, operation: 0x5450)) {
            try Self.deviceList(Array("HTTP/1.1 400 Bad Request\r\n".utf8))
        }
        #expect(throws: USBIPWireError.unexpectedOperation(expected: .replyDeviceList, received: 0x0003)) {
            try Self.deviceList(Self.header(code: 0x0003) + tail)
        }
        #expect(throws: USBIPWireError.unexpectedOperation(expected: .replyImport, received: 0x8003)) {
            try Self.importReply(Self.header(code: 0x8003), busID: "1-1")
        }
        let message = "\(USBIPWireError.unexpectedOperation(expected: .replyImport, received: 0x0005))"
        #expect(message.contains("OP_REP_DEVLIST (0x0005)") && message.contains("OP_REP_IMPORT (0x0003)"))
        #expect("\(USBIPWireError.unexpectedVersion(received: 0x0106, operation: 5))".contains("0x0106"))

        // A failed reader stays failed.
        var reader = USBIPImportReader(busID: "1-1")
        #expect(throws: USBIPWireError.unexpectedVersion(received: 0, operation: 3)) {
            try reader.consume(Self.header(version: 0, code: 3))
        }
        #expect(reader.bytesWanted == 0)
        #expect(throws: USBIPWireError.unexpectedVersion(received: 0, operation: 3)) { try reader.consume([]) }
    }

    @Test func everyNonzeroStatusIsARefusal() throws {
        var explanations = Set<String>()
        for value: UInt32 in [1, 2, 3, 4, 5, 99, .max] {
            let status = USBIPStatus(rawValue: value)
            #expect(throws: USBIPWireError.refused(status, busID: "1-1")) {
                try Self.importReply(Self.header(code: 0x0003, status: value), busID: "1-1")
            }
            #expect(throws: USBIPWireError.refused(status, busID: nil)) {
                try Self.deviceList(Self.header(code: 0x0005, status: value))
            }
            explanations.insert(status.explanation)
            let message = "\(USBIPWireError.refused(status, busID: "1-1"))"
            #expect(message.contains("\"1-1\"") && message.contains(status.explanation))
        }
        #expect(explanations.count == 6, "one sentence for each defined status and one for the others")
        #expect(USBIPStatus.deviceBusy.description == "ST_DEV_BUSY (2)" && USBIPStatus.noDevice.name == "ST_NODEV")
        #expect(USBIPStatus(rawValue: 9).description == "status 9")
    }

    @Test func deviceCountAboveTheLimitIsRefusedAtOnce() throws {
        for count: UInt32 in [4097, 0x8000_0000, .max] {
            var reader = USBIPDeviceListReader()
            #expect(try reader.consume(Self.header(code: 5)) == nil)
            #expect(throws: USBIPWireError.tooManyDevices(count)) {
                try reader.consume([UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)])
            }
            #expect(reader.bytesWanted == 0)
        }
        // The limit itself is accepted: the reader then waits for the first device.
        var reader = USBIPDeviceListReader()
        #expect(try reader.consume(Self.header(code: 5)) == nil)
        #expect(try reader.consume([0, 0, 0x10, 0]) == nil && reader.bytesWanted == 312)
    }

    @Test func tooManyBytesIsACallersMistake() {
        var reader = USBIPDeviceListReader()
        #expect(throws: USBIPWireError.tooManyBytes(given: 9, wanted: 8)) { try reader.consume(Self.header(code: 5) + [0]) }
    }

    @Test func stringFieldsWithoutNulAndWithInvalidUTF8() throws {
        let fullPath = [UInt8](repeating: UInt8(ascii: "p"), count: 256)
        let fullBusID = [UInt8](repeating: UInt8(ascii: "1"), count: 32)
        let list = Self.header(code: 5) + [0, 0, 0, 1] + Self.deviceBytes(path: fullPath, busID: fullBusID) + [3, 1, 1, 0, 3, 0, 0, 0]
        let device = try #require(try Self.deviceList(list)?.first)
        #expect(device.path == String(repeating: "p", count: 256) && device.busID == String(repeating: "1", count: 32))

        let invalid = Self.header(code: 5) + [0, 0, 0, 1]
            + Self.deviceBytes(path: [0x2F, 0xFF, 0xC3, 0x28, 0xE2, 0x82, 0, 0x41], busID: [0x31, 0x80, 0x2D, 0x31]) + [3, 1, 1, 0, 3, 0, 0, 0]
        let odd = try #require(try Self.deviceList(invalid)?.first)
        #expect(odd.path == "/\u{FFFD}\u{FFFD}(\u{FFFD}" && odd.busID == "1\u{FFFD}-1")
        #expect(odd.interfaces.count == 2)
    }

    // MARK: Import

    @Test func importReplyForAnotherDeviceIsRefused() throws {
        #expect(throws: USBIPWireError.busIDMismatch(requested: "1-1", received: "2-3")) {
            try Self.importReply(USBIPWire.importReply(device: Self.disk), busID: "1-1")
        }
        // Compared as bytes: an invalid byte decodes to U+FFFD but is not U+FFFD.
        let reply = Self.header(code: 3) + Self.deviceBytes(path: [], busID: [0xFF])
        #expect(throws: USBIPWireError.busIDMismatch(requested: "\u{FFFD}", received: "\u{FFFD}")) {
            try Self.importReply(reply, busID: "\u{FFFD}")
        }
        // A prefix is not the bus id either.
        #expect(throws: USBIPWireError.busIDMismatch(requested: "2-3.1", received: "2-3")) {
            try Self.importReply(USBIPWire.importReply(device: Self.disk), busID: "2-3.1")
        }
        // The device of an import reply has no interfaces whatever bNumInterfaces says.
        let device = try #require(try Self.importReply(USBIPWire.importReply(device: Self.keyboard), busID: "1-1.2"))
        #expect(device.numberOfInterfaces == 2 && device.interfaces.isEmpty)
    }

    // MARK: vhci-hcd status

    static let status = """
        hub port sta spd dev      sockfd local_busid
        hs  0000 006 002 00010005 000003 3-1
        hs  0001 004 000 00000000 000000 0-0
        hs  0002 004 000 00000000 0000000000000000 0-0\r
        this is not a port
        hs  0003 004 000 00000000
        hs  -004 004 000 00000000 000000 0-0
        hs  0005 004 000 0000zz00 000000 0-0
        xs  0006 004 000 00000000 000000 0-0
        hs  0007 004 000 00000000 000000 0-0 extra
        ss  0008 006 005 00040002 ffff8881234abcd0 4-1
        ss  0009 004 000 00000000 000000 0-0

        ss\t0010\t004\t000\t00000000\t000000\t0-0
        """

    @Test func vhciStatusParsing() {
        let ports = VHCIPortStatus.parse(Self.status)
        #expect(ports.map(\.port) == [0, 1, 2, 8, 9, 10])
        #expect(ports[0] == VHCIPortStatus(hub: .highSpeed, port: 0, status: 6, speed: 2, deviceID: 0x0001_0005, localBusID: "3-1"))
        #expect(ports[3] == VHCIPortStatus(hub: .superSpeed, port: 8, status: 6, speed: 5, deviceID: 0x0004_0002, localBusID: "4-1"))
        #expect(ports.filter(\.isInUse).map(\.localBusID) == ["3-1", "4-1"])
        #expect(ports.filter(\.isFree).map(\.port) == [1, 2, 9, 10])
        #expect(ports[2].localBusID == "0-0" && ports[5].hub == .superSpeed)
        #expect(VHCIPortStatus.parse("").isEmpty && VHCIPortStatus.parse("hub port sta spd dev sockfd local_busid\n").isEmpty)
    }

    @Test func freePortChoice() {
        let ports = VHCIPortStatus.parse(Self.status)
        #expect(VHCIPortStatus.freePort(in: ports, forSpeed: USBDeviceSpeed.high.rawValue) == 1)
        #expect(VHCIPortStatus.freePort(in: ports, forSpeed: USBDeviceSpeed.low.rawValue, excluding: [1]) == 2)
        #expect(VHCIPortStatus.freePort(in: ports, forSpeed: USBDeviceSpeed.wireless.rawValue) == 1)
        #expect(VHCIPortStatus.freePort(in: ports, forSpeed: 99) == 1)
        #expect(VHCIPortStatus.freePort(in: ports, forSpeed: USBDeviceSpeed.superSpeed.rawValue) == 9)
        #expect(VHCIPortStatus.freePort(in: ports, forSpeed: USBDeviceSpeed.superSpeedPlus.rawValue, excluding: [9]) == 10)
        #expect(VHCIPortStatus.freePort(in: ports, forSpeed: USBDeviceSpeed.full.rawValue, excluding: [1, 2]) == nil)
        #expect(VHCIPortStatus.freePort(in: [], forSpeed: 5) == nil)
        #expect(USBDeviceSpeed.superSpeedPlus.description == "super-speed-plus")
    }

    // MARK: Attach records

    @Test func attachRecordRoundTrip() throws {
        let record = try #require(USBIPAttachRecord.parse("192.168.1.5 3240 1-1.2\n"))
        #expect(record == USBIPAttachRecord(host: "192.168.1.5", port: "3240", busID: "1-1.2"))
        #expect(record.fileText == "192.168.1.5 3240 1-1.2\n")
        #expect(USBIPAttachRecord.fileName(port: 3) == "port3")
        for text in ["fe80::1%eth0\t3240\tusbip-vudc.0", "  lab-host   usbip 2-1  \n\n", "héte 3240 1-1"] {
            let parsed = try #require(USBIPAttachRecord.parse(text), "\(text)")
            #expect(USBIPAttachRecord.parse(parsed.fileText) == parsed)
        }
        let longest = String(repeating: "h", count: 255)
        #expect(USBIPAttachRecord.parse("\(longest) 3240 1-1")?.host == longest)
    }

    @Test func malformedAttachRecordsAreRejected() {
        let long = String(repeating: "h", count: 256)
        for text in ["", "\n", "host 3240", "host 3240 1-1 extra", "\(long) 3240 1-1", "host \(long) 1-1",
                     "host 3240 1-\u{1}1", "host\u{7F} 3240 1-1", "host 3240 1-1\u{85}", "host 32\u{0}40 1-1",
                     String(repeating: " ", count: 5000) + "a b c"] {
            #expect(USBIPAttachRecord.parse(text) == nil, "\(text.debugDescription)")
        }
        #expect(!USBIPAttachRecord(host: "my host", port: "3240", busID: "1-1").isValid)
        #expect(USBIPAttachRecord(host: "host", port: "3240", busID: "1-1").isValid)
    }

    /// What a server reads: the requests the client side writes come back
    /// as their operation and bus id; anything else is refused.
    @Test func serverSideParsesTheClientsRequests() throws {
        #expect(try USBIPWire.requestOperation(USBIPWire.deviceListRequest) == .requestDeviceList)
        let request = try USBIPWire.importRequest(busID: "1-1.2")
        #expect(try USBIPWire.requestOperation(Array(request[..<8])) == .requestImport)
        #expect(USBIPWire.requestedBusID(Array(request[8...])) == "1-1.2")
        #expect(request.count == 8 + USBIPWire.requestedBusIDSize)
        // A full field without NUL, invalid UTF-8: read safely, matches no real bus id.
        #expect(USBIPWire.requestedBusID([UInt8](repeating: 0x41, count: 32)) == String(repeating: "A", count: 32))
        #expect(USBIPWire.requestedBusID([0xff, 0xfe, 0]).unicodeScalars.allSatisfy { $0 == "\u{FFFD}" })
        // Another version, a reply's operation, a short header.
        #expect(throws: USBIPWireError.self) { try USBIPWire.requestOperation([0x01, 0x06, 0x80, 0x05, 0, 0, 0, 0]) }
        #expect(throws: USBIPWireError.self) { try USBIPWire.requestOperation([0x01, 0x11, 0x00, 0x05, 0, 0, 0, 0]) }
        #expect(throws: USBIPWireError.self) { try USBIPWire.requestOperation([0x01, 0x11, 0x80]) }
    }
}

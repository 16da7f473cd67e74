import Foundation
import Testing
@testable import DevifCore

@Suite struct SymbolicLinkTests {
    let usbDevice = WellKnownClass.usbDevice.guid
    let hidGUID = WellKnownClass.hid.guid
    let custom = try! GUID(parsing: "{0123abcd-4567-89ab-cdef-0123456789ab}")

    // MARK: SHA-256 (FIPS 180-4 / NIST test vectors)

    @Test func sha256StandardVectors() {
        func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
        #expect(hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hex(SHA256.hash("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(SHA256.hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(hex(SHA256.hash(("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                                 + "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu").utf8))
                == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        // One million 'a', fed in uneven pieces to exercise block boundaries.
        var hasher = SHA256()
        var fed = 0
        var piece = 1
        while fed < 1_000_000 {
            let count = min(piece, 1_000_000 - fed)
            hasher.update(repeatElement(UInt8(ascii: "a"), count: count))
            fed += count
            piece = piece * 7 % 997 + 1
        }
        #expect(hex(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Lengths around the padding boundary (55, 56, 63, 64 bytes) agree between one-shot and piecewise.
        for length in [55, 56, 57, 63, 64, 65, 119, 120] {
            let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            var pieces = SHA256()
            for byte in data { pieces.update(CollectionOfOne(byte)) }
            #expect(pieces.finalize() == SHA256.hash(data), "length \(length)")
        }
        // 448-bit boundary vector: 56 bytes.
        #expect(hex(SHA256.hash(Array(repeating: UInt8(ascii: "a"), count: 56)))
                == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
    }

    // MARK: The examples in ARCHITECTURE.md (and Sources/DevifCore/Links/LINK-FORMAT.md)

    @Test func designExamples() {
        let device = InstanceIdentity(kind: .usb, vendorID: 0x1209, productID: 0x0001,
                                      serialNumber: "SER-0001", location: "1-1")
        #expect(device.symbolicLink(for: usbDevice).rawValue
                == "usb#vid_1209&pid_0001#SER-0001#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")

        let interface = InstanceIdentity(kind: .usb, vendorID: 0x1209, productID: 0x0002, interfaceNumber: 1,
                                         serialNumber: "SER-0001", location: "1-2")
        #expect(interface.symbolicLink(for: custom).rawValue
                == "usb#vid_1209&pid_0002&mi_01#SER-0001#{0123abcd-4567-89ab-cdef-0123456789ab}")

        let hid = InstanceIdentity(kind: .hid, vendorID: 0x1209, productID: 0x0001, interfaceNumber: 0,
                                   busType: .usb, serialNumber: "SER-0001", location: "1-1")
        #expect(hid.symbolicLink(for: hidGUID).rawValue
                == "hid#vid_1209&pid_0001&mi_00#SER-0001#{4d1e55b2-f16f-11cf-88cb-001111000030}")

        let noSerial = InstanceIdentity(kind: .usb, vendorID: 0x1209, productID: 0x0003,
                                        serialNumber: nil, location: "1-1.4")
        #expect(noSerial.symbolicLink(for: usbDevice).rawValue
                == "usb#vid_1209&pid_0003#@1-1.4#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")
        #expect(noSerial.portChain == PortChain(bus: 1, ports: [1, 4]))
    }

    @Test func serialPlusLocationAndNonUSBBus() throws {
        let twin = InstanceIdentity(kind: .usb, vendorID: 0x1209, productID: 0x0001,
                                    serialNumber: "SER-0001", location: "1-2")
        #expect(twin.symbolicLink(for: usbDevice, includeLocation: true).rawValue
                == "usb#vid_1209&pid_0001#SER-0001@1-2#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")

        let uhid = InstanceIdentity(kind: .hid, vendorID: 0x1209, productID: 0x0001, busType: .virtual,
                                    serialNumber: nil, location: "devif/uhid 0")
        let link = uhid.symbolicLink(for: hidGUID)
        #expect(link.rawValue == "hid#vid_1209&pid_0001&bus_06#@devif%2Fuhid%200#{4d1e55b2-f16f-11cf-88cb-001111000030}")
        let parsed = try SymbolicLink(parsing: link.rawValue)
        #expect(parsed.busType == .virtual)
        #expect(parsed.location == .exact("devif/uhid 0"))
        #expect(parsed.serial == nil)
        #expect(parsed.names(uhid))

        let bluetooth = InstanceIdentity(kind: .hid, vendorID: 0x046d, productID: 0xb33d, busType: .bluetooth,
                                         serialNumber: "aa:bb:cc:dd:ee:ff", location: "11:22:33:44:55:66")
        #expect(bluetooth.symbolicLink(for: hidGUID).rawValue
                == "hid#vid_046d&pid_b33d&bus_05#aa%3Abb%3Acc%3Add%3Aee%3Aff#{4d1e55b2-f16f-11cf-88cb-001111000030}")

        let oddBus = InstanceIdentity(kind: .hid, vendorID: 1, productID: 2, busType: BusType(rawValue: 0x1234),
                                      serialNumber: "x", location: "")
        let oddLink = oddBus.symbolicLink(for: hidGUID)
        #expect(oddLink.rawValue.contains("&bus_1234#"))
        #expect(try SymbolicLink(parsing: oddLink.rawValue).busType.rawValue == 0x1234)
    }

    @Test func emptySerialDiffersFromNoSerial() throws {
        let empty = InstanceIdentity(kind: .usb, vendorID: 1, productID: 2, serialNumber: "", location: "1-1")
        let none = InstanceIdentity(kind: .usb, vendorID: 1, productID: 2, serialNumber: nil, location: "1-1")
        let emptyLinks = [empty.symbolicLink(for: usbDevice), empty.symbolicLink(for: usbDevice, includeLocation: true)]
        let noneLink = none.symbolicLink(for: usbDevice)
        #expect(emptyLinks[0].rawValue == "usb#vid_0001&pid_0002#~#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")
        #expect(emptyLinks[1].rawValue == "usb#vid_0001&pid_0002#~@1-1#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")
        #expect(!emptyLinks.contains(noneLink))
        #expect(try SymbolicLink(parsing: emptyLinks[1].rawValue).serial == .exact(""))
        #expect(try SymbolicLink(parsing: noneLink.rawValue).serial == nil)
    }

    @Test func hostileSerialsAreEscaped() throws {
        let hostile = "../#&%@/\u{0}\n\u{1b}[31m é\u{FFFD}~"
        let identity = InstanceIdentity(kind: .usb, vendorID: 1, productID: 2, serialNumber: hostile, location: "1-1")
        let link = identity.symbolicLink(for: usbDevice).rawValue
        #expect(link == "usb#vid_0001&pid_0002#..%2F%23%26%25%40%2F%00%0A%1B%5B31m%20%C3%A9%EF%BF%BD%7E"
                + "#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")
        let parsed = try SymbolicLink(parsing: link)
        #expect(parsed.serial == .exact(hostile))
        #expect(parsed.renderedFromParts == link)
    }

    @Test func longSerialIsShortenedWithHash() throws {
        let long = String(repeating: "Ab", count: 300) + "/end"
        let identity = InstanceIdentity(kind: .usb, vendorID: 1, productID: 2, serialNumber: long, location: "1-1")
        let link = identity.symbolicLink(for: usbDevice, includeLocation: true)
        #expect(link.rawValue.utf8.count <= 255)
        let parsed = try SymbolicLink(parsing: link.rawValue)
        guard case .shortened(let prefix, let digest) = parsed.serial else {
            Issue.record("expected a shortened serial, got \(String(describing: parsed.serial))")
            return
        }
        #expect(prefix == String(long.prefix(LinkField.shortenedPrefixBudget)))
        #expect(digest.bytes == Array(SHA256.hash(long.utf8).prefix(16)))
        #expect(parsed.names(identity))
        // A serial that differs only past the prefix gets another link.
        let other = InstanceIdentity(kind: .usb, vendorID: 1, productID: 2, serialNumber: long + "!", location: "1-1")
        #expect(other.symbolicLink(for: usbDevice) != identity.symbolicLink(for: usbDevice))
        #expect(!parsed.names(other))
    }

    @Test func canonicallyEquivalentSerialsAreDifferentDevices() {
        let composed = InstanceIdentity(kind: .usb, vendorID: 1, productID: 2, serialNumber: "\u{E9}", location: "1-1")
        let decomposed = InstanceIdentity(kind: .usb, vendorID: 1, productID: 2, serialNumber: "e\u{301}", location: "1-1")
        #expect(composed != decomposed)
        #expect(composed.symbolicLink(for: usbDevice) != decomposed.symbolicLink(for: usbDevice))
        #expect(Set([composed, decomposed]).count == 2)
    }

    @Test(arguments: [
        "",
        "usb#vid_1209&pid_0001#SER#{a5dcbf10-6530-11d2-901f-00c04fb951ed}#",
        "USB#vid_1209&pid_0001#SER#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#VID_1209&pid_0001#SER#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_12A9&pid_0001#SER#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001&bus_03#SER#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001&bus_0006#SER#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001&bus_06&mi_01#SER#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER#{A5DCBF10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER#a5dcbf10-6530-11d2-901f-00c04fb951ed",
        "usb#vid_1209&pid_0001##{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#S%41#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#S%2f#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#S%2#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#%FF#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#a@b@c#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#a~123#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#a b#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#a/b#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        // Ordinals: only after a location, 2 and up, no leading zero, digits only.
        "usb#vid_1209&pid_0001#SER!2#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER@1-1!1#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER@1-1!0#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER@1-1!02#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER@1-1!#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER@1-1!2a#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER@1-1!2!3#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER@1-1!10000000#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "usb#vid_1209&pid_0001#SER@1-1!99999999999999999999999#{a5dcbf10-6530-11d2-901f-00c04fb951ed}",
    ])
    func rejectsWhatFormatNeverProduces(_ text: String) {
        #expect(throws: SymbolicLinkParseError.self) { try SymbolicLink(parsing: text) }
    }

    @Test func ordinalTellsApartIdenticalInstancesAndRoundTrips() throws {
        let id = InstanceIdentity(kind: .hid, vendorID: 0x1209, productID: 0x0e20, busType: BusType(rawValue: 6),
                                  serialNumber: "SAME", location: "uhid/0")
        let plain = id.symbolicLink(for: hidGUID)
        let second = id.symbolicLink(for: hidGUID, ordinal: 2)
        let twelfth = id.symbolicLink(for: hidGUID, includeLocation: true, ordinal: 12)
        #expect(plain.rawValue == "hid#vid_1209&pid_0e20&bus_06#SAME#{4d1e55b2-f16f-11cf-88cb-001111000030}")
        #expect(second.rawValue == "hid#vid_1209&pid_0e20&bus_06#SAME@uhid%2F0!2#{4d1e55b2-f16f-11cf-88cb-001111000030}")
        #expect(twelfth.rawValue.contains("@uhid%2F0!12#"))
        #expect(plain.ordinal == nil && second.ordinal == 2 && twelfth.ordinal == 12)
        for link in [plain, second, twelfth] {
            let parsed = try SymbolicLink(parsing: link.rawValue)
            #expect(parsed == link && parsed.ordinal == link.ordinal && parsed.renderedFromParts == link.rawValue)
            #expect(parsed.names(id))
        }
        // No serial: @location!N. The largest ordinal still fits the budget
        // with both fields at their longest.
        let bare = InstanceIdentity(kind: .hid, vendorID: 1, productID: 2, busType: BusType(rawValue: 0x1234),
                                    serialNumber: String(repeating: "\u{1}", count: 300),
                                    location: String(repeating: "/", count: 300))
        let longest = bare.symbolicLink(for: hidGUID, ordinal: SymbolicLink.maximumOrdinal)
        #expect(longest.rawValue.utf8.count <= SymbolicLink.maximumLength)
        #expect(try SymbolicLink(parsing: longest.rawValue).ordinal == SymbolicLink.maximumOrdinal)
        let noSerial = InstanceIdentity(kind: .usb, vendorID: 1, productID: 2, serialNumber: nil, location: "1-1")
        #expect(noSerial.symbolicLink(for: usbDevice, ordinal: 3).rawValue == "usb#vid_0001&pid_0002#@1-1!3#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")
    }

    @Test func parseErrorSaysWhatWasExpected() {
        do {
            _ = try SymbolicLink(parsing: "usb#vid_1209\u{1b}")
            Issue.record("parsed a link with an escape character")
        } catch {
            #expect(error.description.contains("\\u{1b}"))
            #expect(error.description.contains("kind#vid_xxxx&pid_xxxx"))
        }
    }

    @Test func codableAsText() throws {
        let link = InstanceIdentity(kind: .usb, vendorID: 0x1209, productID: 1, serialNumber: "A&B", location: "1-1")
            .symbolicLink(for: usbDevice)
        let data = try JSONEncoder().encode([link])
        #expect(String(decoding: data, as: UTF8.self).contains("A%26B"))
        #expect(try JSONDecoder().decode([SymbolicLink].self, from: data) == [link])
    }
}

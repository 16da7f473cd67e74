import Foundation
import SeededRandom
import Testing
@testable import DevifCore

@Suite struct GUIDTests {
    @Test func parsesWithAndWithoutBracesInAnyCase() throws {
        let expected = GUID(high: 0xa5dc_bf10_6530_11d2, low: 0x901f_00c0_4fb9_51ed)
        for text in ["{a5dcbf10-6530-11d2-901f-00c04fb951ed}", "a5dcbf10-6530-11d2-901f-00c04fb951ed",
                     "{A5DCBF10-6530-11D2-901F-00C04FB951ED}", "A5dCbF10-6530-11d2-901F-00c04fb951eD"] {
            #expect(try GUID(parsing: text) == expected, "\(text)")
        }
        #expect(expected.description == "{a5dcbf10-6530-11d2-901f-00c04fb951ed}")
        #expect(try GUID(parsing: "{00000000-0000-0000-0000-000000000000}") == GUID(high: 0, low: 0))
        #expect(try GUID(parsing: "ffffffff-ffff-ffff-ffff-ffffffffffff") == GUID(high: .max, low: .max))
    }

    @Test(arguments: [
        "", "{}", "{", "}", " {a5dcbf10-6530-11d2-901f-00c04fb951ed}", "{a5dcbf10-6530-11d2-901f-00c04fb951ed} ",
        "{a5dcbf10-6530-11d2-901f-00c04fb951ed", "a5dcbf10-6530-11d2-901f-00c04fb951ed}",
        "{{a5dcbf10-6530-11d2-901f-00c04fb951ed}}", "a5dcbf1006530-11d2-901f-00c04fb951ed",
        "a5dcbf10-6530-11d2-901f-00c04fb951e", "a5dcbf10-6530-11d2-901f-00c04fb951edd",
        "a5dcbf10-6530-11d2-901f-00c04fb951eg", "a5dcbf10_6530_11d2_901f_00c04fb951ed",
        "a5dcbf10653011d2901f00c04fb951ed", "(a5dcbf10-6530-11d2-901f-00c04fb951ed)",
        "a5dcbf10-6530-11d2-901f-00c04fb951e\u{0}", "a5dcbf10-6530-11d2-901f-00c04fb951\u{FF10}d",
        "+5dcbf10-6530-11d2-901f-00c04fb951ed",
    ])
    func rejectsAnythingElse(_ text: String) {
        #expect(throws: GUIDParseError.self) { try GUID(parsing: text) }
    }

    @Test func errorShowsEscapedInputAndExpectedForm() {
        let error = GUIDParseError(input: "bad\u{1b}[2J\n")
        #expect(error.description.contains("\"bad\\u{1b}[2J\\u{a}\""))
        #expect(error.description.contains("{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}"))
        let huge = GUIDParseError(input: String(repeating: "z", count: 10_000))
        #expect(huge.description.utf8.count < 400)
        #expect(huge.description.contains("10000 characters"))
    }

    @Test func orderAgreesWithTextAndBytesRoundTrip() throws {
        var rng = SplitMix64(seed: 7)
        let guids = (0..<200).map { _ in GUID(high: rng.next(), low: rng.next()) }
        #expect(guids.sorted().map(\.description) == guids.map(\.description).sorted())
        for guid in guids {
            #expect(try GUID(parsing: guid.description) == guid)
            #expect(GUID(bytes: guid.bytes) == guid)
        }
        #expect(GUID(bytes: [UInt8](repeating: 0, count: 15)) == nil)
    }

    @Test func codableAsString() throws {
        let guid = WellKnownClass.hid.guid
        let data = try JSONEncoder().encode(["classGuid": guid])
        #expect(String(decoding: data, as: UTF8.self) == #"{"classGuid":"{4d1e55b2-f16f-11cf-88cb-001111000030}"}"#)
        #expect(try JSONDecoder().decode([String: GUID].self, from: data)["classGuid"] == guid)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([GUID].self, from: Data(#"["not-a-guid"]"#.utf8))
        }
    }

    @Test func wellKnownClassesHaveWindowsGUIDsAndLookUpByNameOrGUID() throws {
        let expected: [(String, String)] = [
            ("usb-device", "{a5dcbf10-6530-11d2-901f-00c04fb951ed}"), ("hid", "{4d1e55b2-f16f-11cf-88cb-001111000030}"),
            ("keyboard", "{884b96c3-56ef-11d1-bc8c-00a0c91405dd}"), ("mouse", "{378de44c-56ef-11d1-bc8c-00a0c91405dd}"),
            ("usb-hub", "{f18a0e88-c30c-11d0-8815-00a0c906bed8}"),
        ]
        for (name, guid) in expected {
            let byName = try #require(WellKnownClass.lookup(name))
            #expect(byName.guid.description == guid)
            #expect(WellKnownClass.lookup(guid.uppercased())?.name == name)
            #expect(ClassCatalog.builtIn.lookup(name)?.guid.description == guid)
            #expect(ClassCatalog.builtIn.lookup(String(guid.dropFirst().dropLast()))?.name == name)
        }
        #expect(WellKnownClass.lookup("HID")?.name == "hid")
        #expect(WellKnownClass.lookup("nope") == nil)
        #expect(Set(WellKnownClass.all.map(\.guid)).count == 5)
    }

    @Test func classNames() {
        #expect(InterfaceClass.isValidName("usb-device"))
        #expect(InterfaceClass.isValidName("a.b_c-9"))
        #expect(!InterfaceClass.isValidName(""))
        #expect(!InterfaceClass.isValidName("-x"))
        #expect(!InterfaceClass.isValidName("a b"))
        #expect(!InterfaceClass.isValidName(String(repeating: "a", count: 65)))
        #expect(!InterfaceClass.isValidName("a5dcbf10-6530-11d2-901f-00c04fb951ed"))
    }

    @Test func portChainText() throws {
        #expect(PortChain(bus: 1, ports: [1, 4]).description == "1-1.4")
        #expect(PortChain(bus: 3, ports: []).description == "usb3")
        #expect(PortChain(parsing: "1-1.4") == PortChain(bus: 1, ports: [1, 4]))
        #expect(PortChain(parsing: "usb2") == PortChain(bus: 2, ports: []))
        for bad in ["", "1", "1-", "1-0", "01-1", "1-1.", "1-1..2", "1-256", "x-1", "usb", "1-1.4 "] {
            #expect(PortChain(parsing: bad) == nil, "\(bad)")
        }
    }
}

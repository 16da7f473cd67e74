import SeededRandom
import Testing
@testable import DevifCore

/// Hex text (spaces ignored) to bytes; test input only.
private func bytes(_ hex: String) -> [UInt8] {
    let digits = hex.utf8.filter { hexValue($0) != nil }
    precondition(digits.count % 2 == 0, "odd hex in test input")
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(hexValue(digits[$0])! << 4 | hexValue(digits[$0 + 1])!) }
}

@Suite struct HIDReportDescriptorTests {
    // HID 1.11 appendix B.1 boot keyboard: 8 modifier bits, reserved byte,
    // 6 key codes in; 5 LEDs + 3 padding bits out.
    static let keyboard = bytes("""
        05 01 09 06 a1 01 05 07 19 e0 29 e7 15 00 25 01 75 01 95 08 81 02 95 01 75 08 81 03
        95 05 75 01 05 08 19 01 29 05 91 02 95 01 75 03 91 03 95 06 75 08 15 00 25 65 05 07
        19 00 29 65 81 00 c0
        """)
    // HID 1.11 appendix B.2 boot mouse: application collection holding a
    // physical Pointer collection.
    static let mouse = bytes("""
        05 01 09 02 a1 01 09 01 a1 00 05 09 19 01 29 03 15 00 25 01 95 03 75 01 81 02 95 01
        75 05 81 03 05 01 09 30 09 31 15 81 25 7f 75 08 95 02 81 06 c0 c0
        """)
    // The vendor device the lab's HID gadgets use: page 0xFF00, 64-byte
    // input and output reports, no report IDs.
    static let vendor64 = bytes("""
        06 00 ff 09 01 a1 01 09 02 15 00 26 ff 00 75 08 95 40 81 02 09 03 15 00 26 ff 00 75 08
        95 40 91 02 c0
        """)
    // Two top-level collections with report IDs: keyboard modifiers (ID 1)
    // and a consumer control (ID 2, one 16-bit usage).
    static let keyboardAndConsumer = bytes("""
        05 01 09 06 a1 01 85 01 05 07 19 e0 29 e7 15 00 25 01 75 01 95 08 81 02 c0
        05 0c 09 01 a1 01 85 02 15 00 26 ff 03 19 00 2a ff 03 75 10 95 01 81 00 c0
        """)

    @Test func bootKeyboard() throws {
        let d = try HIDReportDescriptor(validating: Self.keyboard)
        #expect(d.topLevelUsages == [.keyboard])
        #expect(d.collections.count == 1 && d.collections[0].isApplication)
        #expect(d.reportIDs.isEmpty)
        #expect(d.reports == [.init(kind: .input, reportID: 0, bits: 64), .init(kind: .output, reportID: 0, bits: 8)])
        #expect(d.reports.map(\.byteLength) == [8, 1])
    }

    @Test func bootMouseHasOneTopLevelCollectionAndANestedOne() throws {
        let d = try HIDReportDescriptor(validating: Self.mouse)
        #expect(d.topLevelUsages == [.mouse])
        #expect(d.collections.map(\.usage) == [.mouse, HIDUsage(page: 1, usage: 1)])
        #expect(d.collections.map(\.depth) == [0, 1])
        #expect(d.collections.map(\.type) == [1, 0])
        #expect(d.reports == [.init(kind: .input, reportID: 0, bits: 24)])
    }

    @Test func vendorPage64ByteInAndOut() throws {
        let d = try HIDReportDescriptor(validating: Self.vendor64)
        #expect(d.topLevelUsages == [HIDUsage(page: 0xFF00, usage: 0x0001)])
        #expect(d.reports.map(\.byteLength) == [64, 64])
        #expect(d.reports.map(\.kind) == [.input, .output])
    }

    @Test func severalTopLevelCollectionsWithReportIDs() throws {
        let d = try HIDReportDescriptor(validating: Self.keyboardAndConsumer)
        #expect(d.topLevelUsages == [.keyboard, HIDUsage(page: 0x0C, usage: 0x01)])
        #expect(d.reportIDs == [1, 2])
        #expect(d.reports == [.init(kind: .input, reportID: 1, bits: 8), .init(kind: .input, reportID: 2, bits: 16)])
        #expect(d.reports.map(\.byteLength) == [2, 3])
    }

    @Test func extendedUsageCarriesItsOwnPage() throws {
        // Usage 0x000D0005 (4 bytes) with no Usage Page item at all.
        let d = try HIDReportDescriptor(validating: bytes("0b 05 00 0d 00 a1 01 c0"))
        #expect(d.topLevelUsages == [HIDUsage(page: 0x0D, usage: 0x05)])
    }

    @Test func usagePageInEffectAtTheCollectionApplies() throws {
        // Usage before Usage Page: the page at the main item counts (as the
        // kernel does it).
        let d = try HIDReportDescriptor(validating: bytes("09 02 05 01 a1 01 c0"))
        #expect(d.topLevelUsages == [.mouse])
    }

    @Test func pushAndPopRestoreTheUsagePage() throws {
        let d = try HIDReportDescriptor(validating: bytes("05 01 a4 05 0c b4 09 06 a1 01 c0"))
        #expect(d.topLevelUsages == [.keyboard])
    }

    @Test func longItemsAreSkipped() throws {
        let d = try HIDReportDescriptor(validating: bytes("fe 02 10 aa bb 05 01 09 02 a1 01 c0"))
        #expect(d.topLevelUsages == [.mouse])
    }

    @Test func collectionWithoutUsageIsKeptButHasNoUsage() throws {
        let d = try HIDReportDescriptor(validating: bytes("a1 01 c0"))
        #expect(d.collections.count == 1 && d.collections[0].usage == nil)
        #expect(d.topLevelUsages.isEmpty)
    }

    @Test func emptyDescriptorIsValidAndEmpty() throws {
        let d = try HIDReportDescriptor(validating: [UInt8]())
        #expect(d.collections.isEmpty && d.reports.isEmpty && d.issues.isEmpty)
    }

    @Test func truncatedShortItemStopsWithPartialResult() {
        let d = HIDReportDescriptor.parse(bytes("05 01 09 02 a1 01 26 ff"))
        #expect(d.topLevelUsages == [.mouse])
        #expect(d.issues == [.init(offset: 6, kind: .truncatedItem(needed: 3, available: 2))])
        #expect(throws: HIDReportDescriptor.Issue.self) { try HIDReportDescriptor(validating: bytes("05")) }
    }

    @Test func truncatedLongItem() {
        #expect(HIDReportDescriptor.parse(bytes("fe 05 00 01")).issues
                == [.init(offset: 0, kind: .truncatedItem(needed: 8, available: 4))])
        #expect(HIDReportDescriptor.parse(bytes("fe 05")).issues
                == [.init(offset: 0, kind: .truncatedItem(needed: 3, available: 2))])
    }

    @Test func unbalancedCollections() {
        #expect(HIDReportDescriptor.parse(bytes("c0")).issues == [.init(offset: 0, kind: .unbalancedEndCollection)])
        let open = HIDReportDescriptor.parse(bytes("05 01 09 02 a1 01 a1 00"))
        #expect(open.issues == [.init(offset: 8, kind: .unclosedCollections(count: 2))])
        #expect(open.topLevelUsages == [.mouse])
    }

    @Test func deepNestingStops() {
        let d = HIDReportDescriptor.parse(Array([[UInt8]](repeating: [0xA1, 0x00], count: 100).joined()))
        #expect(d.collections.count == HIDReportDescriptor.maximumDepth)
        #expect(d.issues == [.init(offset: 2 * HIDReportDescriptor.maximumDepth, kind: .nestingTooDeep)])
    }

    @Test func pushStackOverflowAndPopWithoutPush() {
        let pushes = HIDReportDescriptor.parse([UInt8](repeating: 0xA4, count: 20))
        #expect(pushes.issues == [.init(offset: HIDReportDescriptor.maximumPushDepth, kind: .pushStackTooDeep)])
        #expect(HIDReportDescriptor.parse(bytes("b4")).issues == [.init(offset: 0, kind: .popWithoutPush)])
    }

    @Test func reservedTypeUnknownMainTagAndBadReportID() {
        #expect(HIDReportDescriptor.parse(bytes("0c")).issues == [.init(offset: 0, kind: .reservedItemType(prefix: 0x0C))])
        #expect(HIDReportDescriptor.parse(bytes("00")).issues == [.init(offset: 0, kind: .unknownMainItem(tag: 0))])
        #expect(HIDReportDescriptor.parse(bytes("85 00")).issues == [.init(offset: 0, kind: .invalidReportID(value: 0))])
        #expect(HIDReportDescriptor.parse(bytes("86 00 01")).issues == [.init(offset: 0, kind: .invalidReportID(value: 256))])
    }

    @Test func hugeReportSizeTimesCountStops() {
        let d = HIDReportDescriptor.parse(bytes("77 ff ff ff ff 97 ff ff ff ff 81 02"))
        #expect(d.issues.count == 1)
        guard case .reportTooLarge = d.issues[0].kind else {
            Issue.record("expected reportTooLarge, got \(d.issues)"); return
        }
        #expect(d.issues[0].offset == 10 && d.reports.isEmpty)
    }

    @Test func tooManyUsagesIsReportedOnce() {
        let many = Array([[UInt8]](repeating: [0x09, 0x01], count: HIDReportDescriptor.maximumLocalUsages + 10).joined())
        let d = HIDReportDescriptor.parse(many + bytes("a1 01 c0"))
        #expect(d.issues.map(\.kind) == [.tooManyUsages])
        #expect(d.topLevelUsages == [HIDUsage(page: 0, usage: 1)])
    }

    @Test func issueDescriptionsSayWhereAndWhat() {
        let text = HIDReportDescriptor.Issue(offset: 6, kind: .truncatedItem(needed: 3, available: 2)).description
        #expect(text.contains("offset 6") && text.contains("truncated"))
    }

    /// Random and mutated inputs: never a crash, and the result stays
    /// within its documented bounds.
    @Test func randomAndMutatedInputsNeverTrap() {
        var rng = SplitMix64(seed: 0x5EED)
        let seeds = [Self.keyboard, Self.mouse, Self.vendor64, Self.keyboardAndConsumer]
        for round in 0..<3000 {
            var input: [UInt8]
            if round % 2 == 0 {
                input = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                input = seeds[Int(rng.next() % UInt64(seeds.count))]
                for _ in 0..<(1 + Int(rng.next() % 4)) where !input.isEmpty {
                    input[Int(rng.next() % UInt64(input.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
                if rng.next() % 3 == 0 { input.removeLast(Int(rng.next() % UInt64(input.count))) }
            }
            let d = HIDReportDescriptor.parse(input)
            #expect(d.collections.allSatisfy { $0.depth < HIDReportDescriptor.maximumDepth && $0.offset < input.count })
            #expect(d.issues.allSatisfy { $0.offset <= input.count })
            #expect(d.reports.allSatisfy { $0.bits <= HIDReportDescriptor.maximumReportBits })
        }
    }
}


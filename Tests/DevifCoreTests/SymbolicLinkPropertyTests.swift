import Foundation
import SeededRandom
import Testing
@testable import DevifCore

/// Seeded property test: many generated identities, many hostile strings.
@Suite struct SymbolicLinkPropertyTests {
    typealias SeededGenerator = SplitMix64

    /// What a link is supposed to be a function of, compared byte-wise.
    struct LinkKey: Hashable, Sendable {
        var kind: DeviceKind, vendorID: UInt16, productID: UInt16, interfaceNumber: UInt8?
        var busType: BusType, serial: Data?, location: Data?, guid: GUID
    }

    static let fixedHostile: [String] = [
        "", ".", "..", "...", "/", "./", "../..", "~", "~~", "@", "@@", "%", "%%", "%41", "%2F", "A", "a",
        "#", "##", "&", "&mi_01", "#{a5dcbf10-6530-11d2-901f-00c04fb951ed}", "\u{0}", "\u{0}\u{0}", "\n", "\r\n",
        "\u{1b}[2J", "\u{7f}", "\u{FFFD}", "\u{FFFD}\u{FFFD}", "é", "e\u{301}", "\u{1F600}", "\u{200B}",
        "SER-0001", "SER-0001@1-2", "1-1.4", "usb1", " ", "\t", "-", "_", "-.", "a~0123456789abcdef0123456789abcdef",
        "~0123456789abcdef0123456789abcdef", String(repeating: "x", count: 88), String(repeating: "x", count: 89),
        String(repeating: "/", count: 29), String(repeating: "/", count: 30), String(repeating: "\u{1F600}", count: 126),
    ]

    static let alphabet: [Unicode.Scalar] = Array("aZ09._-~@#&%/ :{}".unicodeScalars)
        + ["\u{0}", "\u{1}", "\u{1f}", "\u{7f}", "\u{80}", "\u{FFFD}", "\u{E9}", "\u{301}", "\u{4E2D}", "\u{1F600}",
           "\u{10FFFF}", "\u{FEFF}"]

    static func hostileString(_ rng: inout SeededGenerator) -> String {
        switch rng.next() % 10 {
        case 0, 1, 2:
            return fixedHostile[Int(rng.next() % UInt64(fixedHostile.count))]
        case 3:
            // Long strings sharing a long prefix: only the hash tells them apart.
            return String(repeating: "P", count: 60 + Int(rng.next() % 70)) + String(rng.next() % 1000)
        case 4:
            // Printable serial-like text, sometimes near the budget.
            let length = Int(rng.next() % 100)
            return String((0..<length).map { _ in "ABCDEF0123456789".randomElement(using: &rng)! })
        default:
            // USB string descriptors hold at most 126 UTF-16 units; go a little past that.
            let length = Int(rng.next() % (rng.next() % 8 == 0 ? 140 : 20))
            var scalars = String.UnicodeScalarView()
            for _ in 0..<length { scalars.append(alphabet[Int(rng.next() % UInt64(alphabet.count))]) }
            return String(scalars)
        }
    }

    /// What one chunk of the run found.
    struct ChunkResult: Sendable {
        var keys = Set<LinkKey>()
        var links = Set<String>()
        var shortened = 0
    }

    /// 100,000 identities in four seeded chunks run side by side (the result
    /// does not depend on scheduling: each chunk has its own fixed seed, and
    /// the sets are merged before the injectivity check).
    @Test func injectiveRoundTrippingSingleFileNames() async {
        let chunks = 4, perChunk = 25_000
        let started = ContinuousClock.now
        let results = await withTaskGroup(of: ChunkResult.self) { group in
            for chunk in 0..<chunks {
                group.addTask { Self.runChunk(seed: 0xDEF1F &+ UInt64(chunk) &* 0x1_0000_0001, count: perChunk) }
            }
            return await group.reduce(into: [ChunkResult]()) { $0.append($1) }
        }
        var keys = Set<LinkKey>(), links = Set<String>(), shortened = 0
        for result in results {
            keys.formUnion(result.keys)
            links.formUnion(result.links)
            shortened += result.shortened
        }
        let count = chunks * perChunk
        print("SymbolicLinkPropertyTests: \(count) identities, \(keys.count) distinct, \(links.count) distinct links, "
              + "\(shortened) shortened fields, \(ContinuousClock.now - started)")
        #expect(keys.count > count * 9 / 10, "the generator should produce mostly distinct identities")
        #expect(links.count == keys.count, "two different identities share a link")
        #expect(shortened > 1_000, "the generator should exercise the hashed form")
    }

    static func runChunk(seed: UInt64, count: Int) -> ChunkResult {
        var rng = SeededGenerator(seed: seed)
        let guids = [WellKnownClass.usbDevice.guid, WellKnownClass.hid.guid, GUID(high: 0, low: 0),
                     GUID(high: .max, low: .max)]
        let buses: [BusType] = [.usb, .usb, .usb, .virtual, .bluetooth, .i2c, BusType(rawValue: 0xff),
                                BusType(rawValue: 0x100), BusType(rawValue: 0xffff)]
        var keys = Set<LinkKey>()
        var links = Set<String>()
        var shortened = 0
        var failures = 0
        func result() -> ChunkResult { ChunkResult(keys: keys, links: links, shortened: shortened) }
        for _ in 0..<count {
            let serial: String? = rng.next() % 5 == 0 ? nil : Self.hostileString(&rng)
            let location: String = rng.next() % 2 == 0
                ? PortChain(bus: UInt8(rng.next() % 4), ports: (0..<(rng.next() % 4)).map { _ in UInt8(1 + rng.next() % 3) }).description
                : Self.hostileString(&rng)
            let identity = InstanceIdentity(
                kind: rng.next() % 2 == 0 ? .usb : .hid,
                vendorID: rng.next() % 4 == 0 ? UInt16(truncatingIfNeeded: rng.next()) : 0x1209,
                productID: UInt16(rng.next() % 3),
                interfaceNumber: rng.next() % 3 == 0 ? nil : UInt8(truncatingIfNeeded: rng.next() % 3 == 0 ? rng.next() : rng.next() % 3),
                busType: buses[Int(rng.next() % UInt64(buses.count))],
                serialNumber: serial, location: location)
            let includeLocation = rng.next() % 2 == 0
            let guid = guids[Int(rng.next() % UInt64(guids.count))]
            let link = identity.symbolicLink(for: guid, includeLocation: includeLocation)
            let locationInLink = serial == nil || includeLocation
            keys.insert(LinkKey(kind: identity.kind, vendorID: identity.vendorID, productID: identity.productID,
                                interfaceNumber: identity.interfaceNumber, busType: identity.busType,
                                serial: serial.map { Data($0.utf8) },
                                location: locationInLink ? Data(location.utf8) : nil, guid: guid))
            links.insert(link.rawValue)

            // Plain checks rather than #require in this hot loop: the macros are costly in debug builds.
            func failed(_ message: String) -> Bool {
                Issue.record(Comment(rawValue: message + " — identity \(identity), link \(link.rawValue)"))
                failures += 1
                return failures >= 10
            }
            // A valid single file name, whatever the input.
            let bytes = Array(link.rawValue.utf8)
            if bytes.count > 255, failed("longer than 255 bytes") { return result() }
            if !bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") }), failed("bad byte") { return result() }
            if link.rawValue == "." || link.rawValue == ".." || bytes.first == UInt8(ascii: "."),
               failed("dot name") { return result() }

            // Round trip.
            let parsed: SymbolicLink
            do { parsed = try SymbolicLink(parsing: link.rawValue) } catch {
                if failed("does not parse: \(error)") { return result() }
                continue
            }
            if parsed.renderedFromParts != link.rawValue, failed("the parsed parts render another link") { return result() }
            if !(parsed.kind == identity.kind && parsed.vendorID == identity.vendorID
                 && parsed.productID == identity.productID && parsed.interfaceNumber == identity.interfaceNumber
                 && parsed.busType == identity.busType && parsed.classGUID == guid), failed("ids differ") { return result() }
            if let problem = Self.check(parsed.serial, against: serial, shortened: &shortened),
               failed("serial: " + problem) { return result() }
            if let problem = Self.check(parsed.location, against: locationInLink ? location : nil, shortened: &shortened),
               failed("location: " + problem) { return result() }
            if rng.next() % 16 == 0, !parsed.names(identity), failed("names() rejects its own identity") { return result() }
        }
        return result()
    }

    /// A parsed field against the raw text, checked without using LinkField's
    /// own encoder. Returns what is wrong, or nil.
    static func check(_ field: LinkField?, against raw: String?, shortened: inout Int) -> String? {
        guard let raw else { return field == nil ? nil : "a field that should be absent" }
        let escapedLength = escapedCount(raw.utf8)
        switch field {
        case .exact(let text)?:
            guard escapedLength <= 88 else { return "exact although \(escapedLength) escaped bytes" }
            guard text.utf8.elementsEqual(raw.utf8) else { return "exact text differs" }
        case .shortened(let prefix, let digest)?:
            shortened += 1
            guard escapedLength > 88 else { return "shortened although only \(escapedLength) escaped bytes" }
            guard raw.utf8.starts(with: prefix.utf8) else { return "prefix is not a prefix" }
            let rawScalars = Array(raw.unicodeScalars)
            let used = escapedCount(prefix.utf8)
            let next = rawScalars[prefix.unicodeScalars.count]
            let nextCost = escapedCount(String(next).utf8)
            guard used <= 55 && used + nextCost > 55 else { return "prefix is not the longest that fits" }
            guard digest.bytes == Array(SHA256.hash(raw.utf8).prefix(16)) else { return "digest differs" }
        case nil:
            return "field missing"
        }
        return nil
    }

    /// Length after percent-escaping (a plain loop: closures are slow in debug builds).
    static func escapedCount(_ bytes: String.UTF8View) -> Int {
        var count = 0
        for byte in bytes { count += isSafe(byte) ? 1 : 3 }
        return count
    }

    static func isSafe(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte)
            || byte == 0x2e || byte == 0x5f || byte == 0x2d
    }
}

/// A defensive parser of HID report descriptors (HID 1.11, section 6.2.2).
///
/// The descriptor comes from the device (or from whoever created a uhid
/// device) and is untrusted: every length, nesting level and count is checked,
/// work is linear in the input, and malformed input yields a partial result
/// with ``issues`` (``parse(_:)``) or an error (``init(validating:)``), never
/// a crash.
///
/// What it extracts is what devif needs to classify and to do I/O: every
/// collection with its usage, the top-level collections' usages (what the
/// classifier matches), and the length of each input, output and feature
/// report per report ID.
public struct HIDReportDescriptor: Hashable, Sendable {
    /// Every collection in descriptor order (nested ones too).
    public var collections: [Collection]
    /// The report IDs the descriptor declares, ascending; empty when it uses
    /// no report IDs (every report then has ID 0 and no ID byte on the wire).
    public var reportIDs: [UInt8]
    /// Sizes of the reports, one entry per (type, report ID), sorted by type
    /// then ID.
    public var reports: [Report]
    /// What was wrong, in input order; empty for a well-formed descriptor.
    /// When the last issue is ``Issue/Kind/isFatal`` parsing stopped there and
    /// everything above describes the bytes before it.
    public var issues: [Issue]

    /// The usages of the top-level collections (nesting depth 0) that have a
    /// usage, in descriptor order: what Windows calls the top-level
    /// collections and what the classifier matches HID classes against.
    public var topLevelUsages: [HIDUsage] {
        collections.filter { $0.depth == 0 }.compactMap(\.usage)
    }

    /// One Collection main item.
    public struct Collection: Hashable, Sendable {
        /// The collection type (0 physical, 1 application, 2 logical, 3
        /// report, 4 named array, 5 usage switch, 6 usage modifier, 0x80...0xFF
        /// vendor).
        public var type: UInt8
        /// The first usage in scope at the Collection item; nil when none was.
        public var usage: HIDUsage?
        /// 0 for a top-level collection.
        public var depth: Int
        /// Byte offset of the Collection item.
        public var offset: Int

        /// A collection from its parts (the parser makes these; tests compare with them).
        public init(type: UInt8, usage: HIDUsage?, depth: Int, offset: Int) {
            self.type = type
            self.usage = usage
            self.depth = depth
            self.offset = offset
        }

        /// Whether this is an Application collection (type 1).
        public var isApplication: Bool { type == 1 }
    }

    /// The size of one report.
    public struct Report: Hashable, Sendable, Comparable {
        /// Which of a device's three report spaces a report is in.
        public enum Kind: UInt8, Hashable, Sendable, Comparable {
            /// `input`: device to host (the interrupt stream, GET_REPORT);
            /// `output`: host to device; `feature`: either way, on request.
            case input = 0, output = 1, feature = 2
            public static func < (lhs: Kind, rhs: Kind) -> Bool { lhs.rawValue < rhs.rawValue }
        }

        /// Input, output or feature.
        public var kind: Kind
        /// 0 when the descriptor uses no report IDs.
        public var reportID: UInt8
        /// The report's data size in bits, without the report ID byte.
        public var bits: Int

        /// A report size from its parts.
        public init(kind: Kind, reportID: UInt8, bits: Int) {
            self.kind = kind
            self.reportID = reportID
            self.bits = bits
        }

        /// The bytes on the wire (hidraw read/write): data rounded up to whole
        /// bytes, plus one for the report ID when it is not 0.
        public var byteLength: Int { (bits + 7) / 8 + (reportID == 0 ? 0 : 1) }

        public static func < (lhs: Report, rhs: Report) -> Bool {
            lhs.kind != rhs.kind ? lhs.kind < rhs.kind : lhs.reportID < rhs.reportID
        }
    }

    /// Something wrong with the descriptor, and where.
    public struct Issue: Error, Hashable, Sendable, CustomStringConvertible {
        /// Byte offset of the item at fault (or the descriptor's length for
        /// problems found at its end).
        public var offset: Int
        /// What is wrong.
        public var kind: Kind

        /// An issue of `kind` at byte `offset`.
        public init(offset: Int, kind: Kind) {
            self.offset = offset
            self.kind = kind
        }

        /// The problems the parser reports.
        public enum Kind: Hashable, Sendable {
            /// An item's data runs past the end (parsing stops).
            case truncatedItem(needed: Int, available: Int)
            /// A short item with type 3 (reserved); skipped.
            case reservedItemType(prefix: UInt8)
            /// A main item tag the specification does not define; skipped.
            case unknownMainItem(tag: UInt8)
            /// End Collection with no open collection; ignored.
            case unbalancedEndCollection
            /// Collections still open at the end.
            case unclosedCollections(count: Int)
            /// Nesting deeper than ``HIDReportDescriptor/maximumDepth`` (parsing stops).
            case nestingTooDeep
            /// Pop without Push; ignored.
            case popWithoutPush
            /// More than ``HIDReportDescriptor/maximumPushDepth`` Pushes (parsing stops).
            case pushStackTooDeep
            /// A Report ID outside 1...255 (0 is reserved); ignored.
            case invalidReportID(value: UInt32)
            /// Report Size x Report Count is implausibly large (parsing stops).
            case reportTooLarge(bits: Int)
            /// More local usages before one main item than
            /// ``HIDReportDescriptor/maximumLocalUsages``; the rest are dropped.
            case tooManyUsages

            /// Whether parsing stopped at this issue.
            public var isFatal: Bool {
                switch self {
                case .truncatedItem, .nestingTooDeep, .pushStackTooDeep, .reportTooLarge: true
                default: false
                }
            }
        }

        public var description: String {
            let what: String = switch kind {
            case .truncatedItem(let needed, let available):
                "item needs \(needed) bytes but only \(available) remain (truncated descriptor)"
            case .reservedItemType(let prefix): "reserved item type (prefix 0x\(hex2(prefix))), skipped"
            case .unknownMainItem(let tag): "unknown main item tag 0x\(String(tag, radix: 16)), skipped"
            case .unbalancedEndCollection: "End Collection without an open collection"
            case .unclosedCollections(let count): "\(count) collection(s) never closed"
            case .nestingTooDeep: "collections nested deeper than \(HIDReportDescriptor.maximumDepth)"
            case .popWithoutPush: "Pop without a matching Push"
            case .pushStackTooDeep: "more than \(HIDReportDescriptor.maximumPushDepth) nested Push items"
            case .invalidReportID(let value): "Report ID \(value) is outside 1...255"
            case .reportTooLarge(let bits): "a report of \(bits) bits is implausibly large"
            case .tooManyUsages: "more than \(HIDReportDescriptor.maximumLocalUsages) usages before one main item"
            }
            return "HID report descriptor, offset \(offset): \(what)"
        }
    }

    /// Collections nested deeper than this stop the parse (the Linux kernel's
    /// own limit is far lower in practice; real devices use 2-4 levels).
    public static let maximumDepth = 64
    /// Push items nested deeper than this stop the parse.
    public static let maximumPushDepth = 16
    /// Local usages kept per main item (the kernel keeps 12288; one is enough
    /// for collections, so a generous cap costs nothing real).
    public static let maximumLocalUsages = 1024
    /// A single report larger than this (bits) stops the parse: hidraw's
    /// buffer is 16 KiB, so nothing real comes close.
    public static let maximumReportBits = 1 << 20

    /// A parse result from its parts (the parser makes these; tests compare with them).
    public init(collections: [Collection], reportIDs: [UInt8], reports: [Report], issues: [Issue]) {
        self.collections = collections
        self.reportIDs = reportIDs
        self.reports = reports
        self.issues = issues
    }

    /// Parses as much as is well-formed; never fails. Check ``issues``.
    public static func parse(_ bytes: some Swift.Collection<UInt8>) -> HIDReportDescriptor {
        var parser = Parser(bytes: Array(bytes))
        return parser.run()
    }

    /// Parses and throws the first issue, if any.
    public init(validating bytes: some Swift.Collection<UInt8>) throws(Issue) {
        let result = Self.parse(bytes)
        if let first = result.issues.first { throw first }
        self = result
    }
}

private struct Parser {
    let bytes: [UInt8]

    struct Globals {
        var usagePage: UInt32 = 0
        var reportSize: UInt32 = 0
        var reportCount: UInt32 = 0
        var reportID: UInt8 = 0
    }

    var globals = Globals()
    var pushStack: [Globals] = []
    /// Local usages as (explicit page or nil, usage); the page of a 1- or
    /// 2-byte usage is the Usage Page in effect at the next main item.
    var localUsages: [(page: UInt16?, usage: UInt16)] = []
    var usageMinimum: (page: UInt16?, usage: UInt16)?
    var depth = 0
    var collections: [HIDReportDescriptor.Collection] = []
    var reportIDs: Set<UInt8> = []
    var reportBits: [HIDReportDescriptor.Report.Kind: [UInt8: Int]] = [:]
    var issues: [HIDReportDescriptor.Issue] = []

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func run() -> HIDReportDescriptor {
        var offset = 0
        loop: while offset < bytes.count {
            let prefix = bytes[offset]
            let remaining = bytes.count - offset
            if prefix == 0xFE {
                // Long item: bDataSize, bLongItemTag, data. No long item tags
                // are defined; skip it whole.
                guard remaining >= 3 else {
                    issues.append(.init(offset: offset, kind: .truncatedItem(needed: 3, available: remaining)))
                    break loop
                }
                let needed = 3 + Int(bytes[offset + 1])
                guard remaining >= needed else {
                    issues.append(.init(offset: offset, kind: .truncatedItem(needed: needed, available: remaining)))
                    break loop
                }
                offset += needed
                continue
            }
            let sizeCode = prefix & 0x3
            let dataSize = sizeCode == 3 ? 4 : Int(sizeCode)
            guard remaining >= 1 + dataSize else {
                issues.append(.init(offset: offset, kind: .truncatedItem(needed: 1 + dataSize, available: remaining)))
                break loop
            }
            var value: UInt32 = 0
            for index in 0..<dataSize {
                value |= UInt32(bytes[offset + 1 + index]) << (8 * index)
            }
            let type = (prefix >> 2) & 0x3
            let tag = prefix >> 4
            let keepGoing: Bool
            switch type {
            case 0: keepGoing = main(tag: tag, value: value, offset: offset)
            case 1: keepGoing = global(tag: tag, value: value, size: dataSize, offset: offset)
            case 2: local(tag: tag, value: value, size: dataSize, offset: offset); keepGoing = true
            default:
                issues.append(.init(offset: offset, kind: .reservedItemType(prefix: prefix)))
                keepGoing = true
            }
            if !keepGoing { break loop }
            offset += 1 + dataSize
        }
        let stoppedEarly = issues.last?.kind.isFatal ?? false
        if depth > 0 && !stoppedEarly {
            issues.append(.init(offset: bytes.count, kind: .unclosedCollections(count: depth)))
        }
        var reports: [HIDReportDescriptor.Report] = []
        for (kind, byID) in reportBits {
            for (id, bits) in byID { reports.append(.init(kind: kind, reportID: id, bits: bits)) }
        }
        return HIDReportDescriptor(collections: collections, reportIDs: reportIDs.sorted(),
                                   reports: reports.sorted(), issues: issues)
    }

    /// Returns false to stop the parse.
    mutating func main(tag: UInt8, value: UInt32, offset: Int) -> Bool {
        defer { clearLocals() }
        switch tag {
        case 0x8, 0x9, 0xB:  // Input, Output, Feature
            let kind: HIDReportDescriptor.Report.Kind = tag == 0x8 ? .input : tag == 0x9 ? .output : .feature
            // Both factors are at most 32 bits: the product fits in 64 bits.
            let bits = UInt64(globals.reportSize) * UInt64(globals.reportCount)
            let total = UInt64(reportBits[kind]?[globals.reportID] ?? 0) + bits
            guard total <= UInt64(HIDReportDescriptor.maximumReportBits) else {
                issues.append(.init(offset: offset, kind: .reportTooLarge(bits: Int(min(total, UInt64(Int.max))))))
                return false
            }
            reportBits[kind, default: [:]][globals.reportID] = Int(total)
        case 0xA:  // Collection
            guard depth < HIDReportDescriptor.maximumDepth else {
                issues.append(.init(offset: offset, kind: .nestingTooDeep))
                return false
            }
            collections.append(.init(type: UInt8(truncatingIfNeeded: value), usage: firstUsage(),
                                     depth: depth, offset: offset))
            depth += 1
        case 0xC:  // End Collection
            if depth == 0 {
                issues.append(.init(offset: offset, kind: .unbalancedEndCollection))
            } else {
                depth -= 1
            }
        default:
            issues.append(.init(offset: offset, kind: .unknownMainItem(tag: tag)))
        }
        return true
    }

    /// Returns false to stop the parse.
    mutating func global(tag: UInt8, value: UInt32, size: Int, offset: Int) -> Bool {
        switch tag {
        case 0x0: globals.usagePage = value
        case 0x7: globals.reportSize = value
        case 0x8:
            if value == 0 || value > 0xFF {
                // Out-of-range IDs are not representable on the wire either.
                issues.append(.init(offset: offset, kind: .invalidReportID(value: value)))
            } else {
                globals.reportID = UInt8(value)
                reportIDs.insert(UInt8(value))
            }
        case 0x9: globals.reportCount = value
        case 0xA:  // Push
            guard pushStack.count < HIDReportDescriptor.maximumPushDepth else {
                issues.append(.init(offset: offset, kind: .pushStackTooDeep))
                return false
            }
            pushStack.append(globals)
        case 0xB:  // Pop
            if let saved = pushStack.popLast() {
                globals = saved
            } else {
                issues.append(.init(offset: offset, kind: .popWithoutPush))
            }
        default: break  // logical/physical extents, units: not needed here
        }
        return true
    }

    mutating func local(tag: UInt8, value: UInt32, size: Int, offset: Int) {
        // A 4-byte usage is an extended usage: page in the high 16 bits.
        let usage: (page: UInt16?, usage: UInt16) = size == 4
            ? (UInt16(value >> 16), UInt16(truncatingIfNeeded: value))
            : (nil, UInt16(truncatingIfNeeded: value))
        switch tag {
        case 0x0:  // Usage
            if localUsages.count < HIDReportDescriptor.maximumLocalUsages {
                localUsages.append(usage)
            } else if localUsages.count == HIDReportDescriptor.maximumLocalUsages {
                issues.append(.init(offset: offset, kind: .tooManyUsages))
                localUsages.append(usage)  // one past the cap marks "reported"
            }
        case 0x1: usageMinimum = usage  // Usage Minimum: a range's first usage
        default: break
        }
    }

    mutating func clearLocals() {
        localUsages.removeAll(keepingCapacity: true)
        usageMinimum = nil
    }

    /// The collection's usage: its first Usage, else its Usage Minimum, with
    /// the page in effect now when the usage did not carry its own.
    func firstUsage() -> HIDUsage? {
        guard let first = localUsages.first ?? usageMinimum else { return nil }
        return HIDUsage(page: first.page ?? UInt16(truncatingIfNeeded: globals.usagePage), usage: first.usage)
    }
}

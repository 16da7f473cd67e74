/// A 128-bit globally unique identifier, as Windows uses for interface classes.
///
/// Stored as 16 bytes (two big-endian words) in the order the text form is
/// written, so `Comparable` agrees with comparing the canonical text.
/// The text form is `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`, lowercase.
public struct GUID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The first 8 bytes of the text form, most significant first.
    public let high: UInt64
    /// The last 8 bytes of the text form, most significant first.
    public let low: UInt64

    /// A GUID from its two halves (`high` is the first 16 hex digits of the text form).
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A GUID from exactly 16 bytes in text order (not Windows' mixed-endian
    /// in-memory layout). Returns nil unless there are exactly 16 bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0, low: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            if index < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
        }
        self.init(high: high, low: low)
    }

    /// Parses `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` or the same without braces,
    /// hex digits in any case. Nothing else is accepted: no whitespace, no
    /// unbalanced brace, no other separators.
    public init(parsing text: some StringProtocol) throws(GUIDParseError) {
        var utf8 = Substring(text).utf8[...]
        // Braces are optional but must come as a pair.
        if utf8.first == UInt8(ascii: "{") || utf8.last == UInt8(ascii: "}") {
            guard utf8.count >= 2, utf8.first == UInt8(ascii: "{"), utf8.last == UInt8(ascii: "}") else {
                throw GUIDParseError(input: String(text))
            }
            utf8 = utf8.dropFirst().dropLast()
        }
        guard utf8.count == 36 else { throw GUIDParseError(input: String(text)) }
        var high: UInt64 = 0, low: UInt64 = 0, digits = 0
        for (offset, byte) in utf8.enumerated() {
            if offset == 8 || offset == 13 || offset == 18 || offset == 23 {
                guard byte == UInt8(ascii: "-") else { throw GUIDParseError(input: String(text)) }
                continue
            }
            guard let nibble = hexValue(byte) else { throw GUIDParseError(input: String(text)) }
            if digits < 16 { high = high << 4 | UInt64(nibble) } else { low = low << 4 | UInt64(nibble) }
            digits += 1
        }
        self.init(high: high, low: low)
    }

    /// The 16 bytes in text order.
    public var bytes: [UInt8] {
        (0..<16).map { index in
            let word = index < 8 ? high : low
            return UInt8(truncatingIfNeeded: word >> (UInt64(7 - index % 8) * 8))
        }
    }

    /// `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`, lowercase.
    public var description: String {
        var out = [UInt8]()
        out.reserveCapacity(38)
        out.append(UInt8(ascii: "{"))
        for (index, byte) in bytes.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { out.append(UInt8(ascii: "-")) }
            out.append(lowerHexDigits[Int(byte >> 4)])
            out.append(lowerHexDigits[Int(byte & 0xF)])
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    public static func < (lhs: GUID, rhs: GUID) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }

    /// Decodes from the text form (braces optional).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    /// Encodes as the canonical text form.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Text that is not a GUID.
public struct GUIDParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The text as given.
    public let input: String

    public init(input: String) { self.input = input }

    public var description: String {
        "\(quotedForMessage(input)) is not a GUID: expected 32 hexadecimal digits written as "
            + "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx} (braces optional, any case, nothing around it)"
    }
}

let lowerHexDigits: [UInt8] = Array("0123456789abcdef".utf8)
let upperHexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

/// The value of one ASCII hex digit (either case), or nil.
@inline(__always)
func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

/// Quotes untrusted text for an error message: control and other invisible
/// characters are shown as `\u{…}` escapes and very long text is cut, so a
/// message never carries terminal escapes or megabytes of input.
func quotedForMessage(_ text: String, limit: Int = 80) -> String {
    var out = "\""
    var shown = 0
    var total = 0
    for scalar in text.unicodeScalars {
        total += 1
        guard shown < limit else { continue }
        shown += 1
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
            || scalar.properties.generalCategory == .format
            || scalar.properties.generalCategory == .lineSeparator
            || scalar.properties.generalCategory == .paragraphSeparator:
            out += "\\u{" + String(scalar.value, radix: 16) + "}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    out += "\""
    if total > shown { out += " (cut; \(total) characters in all)" }
    return out
}

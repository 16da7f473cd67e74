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

    /// Parses exactly the canonical text (braces, lowercase), as links carry it.
    init?(lowercaseBraced text: ArraySlice<UInt8>) {
        guard text.count == 38, text[text.startIndex] == UInt8(ascii: "{"),
              text[text.endIndex - 1] == UInt8(ascii: "}") else { return nil }
        var high: UInt64 = 0, low: UInt64 = 0, digits = 0
        var offset = 1
        while offset < 37 {
            let byte = text[text.startIndex + offset]
            if offset == 9 || offset == 14 || offset == 19 || offset == 24 {
                guard byte == UInt8(ascii: "-") else { return nil }
            } else {
                guard isLowerHexDigit(byte), let nibble = hexValue(byte) else { return nil }
                if digits < 16 { high = high << 4 | UInt64(nibble) } else { low = low << 4 | UInt64(nibble) }
                digits += 1
            }
            offset += 1
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
        appendText(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends ``description``'s UTF-8 bytes (no intermediate String; links are built as bytes).
    func appendText(to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        for index in 0..<32 {
            if index == 8 || index == 12 || index == 16 || index == 20 { out.append(UInt8(ascii: "-")) }
            let word = index < 16 ? high : low
            let nibble = Int(truncatingIfNeeded: word >> UInt64(60 - 4 * (index % 16))) & 0xF
            out.append(lowerHexDigits[nibble])
        }
        out.append(UInt8(ascii: "}"))
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

    /// An error about `input`.
    public init(input: String) { self.input = input }

    public var description: String {
        "\(quotedForMessage(input)) is not a GUID: expected 32 hexadecimal digits written as "
            + "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx} (braces optional, any case, nothing around it)"
    }
}

let lowerHexDigits: [UInt8] = Array("0123456789abcdef".utf8)
let upperHexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

/// The value of one ASCII hex digit (either case), or nil.
/// (Plain comparisons: in debug builds, range patterns go through generic code.)
@inline(__always)
func hexValue(_ byte: UInt8) -> UInt8? {
    if byte &- 0x30 < 10 { return byte &- 0x30 }
    let lower = byte | 0x20
    if lower &- 0x61 < 6 { return lower &- 0x61 + 10 }
    return nil
}

/// Whether `byte` is one of `0-9a-f` (hex in the case links and GUIDs are written in).
@inline(__always)
func isLowerHexDigit(_ byte: UInt8) -> Bool {
    byte &- 0x30 < 10 || byte &- 0x61 < 6
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

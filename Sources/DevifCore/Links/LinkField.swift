/// One device-supplied field of a symbolic link (serial number or location),
/// as it can be read back from the link.
public enum LinkField: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The whole raw text.
    case exact(String)
    /// The text was too long: the longest prefix (whole Unicode scalars) whose
    /// escape fits ``shortenedPrefixBudget``, and the first 128 bits of the
    /// SHA-256 of the whole text's UTF-8 bytes.
    case shortened(prefix: String, digest: Digest128)

    /// The most bytes a field takes in a link. Two fields, '@', and the
    /// longest fixed parts (76 bytes) stay within 255.
    public static let budget = 88
    /// The most bytes the escaped prefix of a shortened field takes
    /// (budget − '~' − 32 hex digits).
    public static let shortenedPrefixBudget = budget - 1 - 32

    /// The field for raw device text: exact if its escape fits ``budget``,
    /// shortened otherwise.
    public init(encoding raw: String) {
        let bytes = Array(raw.utf8)
        var escapedLength = 0
        for byte in bytes { escapedLength += isLinkSafe(byte) ? 1 : 3 }
        if escapedLength <= Self.budget {
            self = .exact(raw)
            return
        }
        // The longest prefix of whole scalars whose escape fits. The bytes come
        // from a String, so they are valid UTF-8 and lead bytes give lengths.
        var used = 0, end = 0
        while end < bytes.count {
            let lead = bytes[end]
            let length = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
            let cost = lead < 0x80 ? (isLinkSafe(lead) ? 1 : 3) : 3 * length
            guard used + cost <= Self.shortenedPrefixBudget else { break }
            used += cost
            end += length
        }
        self = .shortened(prefix: String(decoding: bytes[..<end], as: UTF8.self),
                          digest: Digest128(sha256Of: bytes))
    }

    /// Decodes the text of a field in a link. Throws unless it is exactly what
    /// ``encoded`` produces for some field.
    init(decoding bytes: ArraySlice<UInt8>) throws(LinkFieldError) {
        let tilde = UInt8(ascii: "~")
        if bytes.count == 1 && bytes[bytes.startIndex] == tilde {
            self = .exact("")
            return
        }
        var tildeIndex = bytes.startIndex
        while tildeIndex < bytes.endIndex && bytes[tildeIndex] != tilde { tildeIndex += 1 }
        guard tildeIndex < bytes.endIndex else {
            guard !bytes.isEmpty else { throw LinkFieldError(reason: "a field is empty (an empty string is written '~')") }
            guard bytes.count <= Self.budget else {
                throw LinkFieldError(reason: "a field is longer than \(Self.budget) bytes (longer text is written prefix~hash)")
            }
            self = .exact(try linkUnescape(bytes))
            return
        }
        guard bytes.endIndex - tildeIndex == 33 else {
            throw LinkFieldError(reason: "'~' must be the whole field (empty text) or be followed by exactly 32 lowercase hex digits")
        }
        var digestBytes = [UInt8](repeating: 0, count: 16)
        var index = tildeIndex + 1
        while index < bytes.endIndex {
            let high = bytes[index], low = bytes[index + 1]
            guard isLowerHexDigit(high), isLowerHexDigit(low) else {
                throw LinkFieldError(reason: "'~' must be followed by exactly 32 lowercase hex digits")
            }
            digestBytes[(index - tildeIndex - 1) / 2] = hexValue(high)! << 4 | hexValue(low)!
            index += 2
        }
        let prefixBytes = bytes[..<tildeIndex]
        guard !prefixBytes.isEmpty, prefixBytes.count <= Self.shortenedPrefixBudget else {
            throw LinkFieldError(reason: "a shortened field's prefix must be 1...\(Self.shortenedPrefixBudget) bytes")
        }
        self = .shortened(prefix: try linkUnescape(prefixBytes), digest: Digest128(bytes: digestBytes))
    }

    /// The field as it appears in a link: the escape of the text; `~` for
    /// empty text; escaped prefix + `~` + 32 hex digits when shortened.
    public var encoded: String {
        var out: [UInt8] = []
        append(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends ``encoded``'s bytes.
    func append(to out: inout [UInt8]) {
        switch self {
        case .exact(let raw):
            if raw.isEmpty { out.append(UInt8(ascii: "~")) } else { linkEscape(raw.utf8, into: &out) }
        case .shortened(let prefix, let digest):
            linkEscape(prefix.utf8, into: &out)
            out.append(UInt8(ascii: "~"))
            for byte in digest.bytes {
                out.append(lowerHexDigits[Int(byte >> 4)])
                out.append(lowerHexDigits[Int(byte & 0xF)])
            }
        }
    }

    /// Whether `raw` is text this field stands for (byte-wise; for a shortened
    /// field: starts with the prefix and has the digest).
    public func matches(_ raw: String) -> Bool {
        switch self {
        case .exact(let text):
            text.utf8.elementsEqual(raw.utf8)
        case .shortened(let prefix, let digest):
            raw.utf8.starts(with: prefix.utf8) && Digest128(sha256Of: raw.utf8) == digest
        }
    }

    public var description: String { encoded }

    public static func == (lhs: LinkField, rhs: LinkField) -> Bool {
        switch (lhs, rhs) {
        case let (.exact(l), .exact(r)): l.utf8.elementsEqual(r.utf8)
        case let (.shortened(lp, ld), .shortened(rp, rd)): ld == rd && lp.utf8.elementsEqual(rp.utf8)
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(encoded) }
}

/// The first 128 bits of a SHA-256 digest.
public struct Digest128: Hashable, Sendable, Codable, CustomStringConvertible {
    /// 16 bytes.
    public let bytes: [UInt8]

    /// Keeps the first 16 bytes of `bytes` (which must have at least 16).
    public init(bytes: [UInt8]) {
        precondition(bytes.count >= 16, "a Digest128 needs 16 bytes")
        self.bytes = Array(bytes.prefix(16))
    }

    /// SHA-256 of `data`, cut to 128 bits.
    public init(sha256Of data: some Sequence<UInt8>) {
        self.init(bytes: SHA256.hash(data))
    }

    /// 32 lowercase hex digits.
    public var description: String {
        String(decoding: bytes.flatMap { [lowerHexDigits[Int($0 >> 4)], lowerHexDigits[Int($0 & 0xF)]] },
               as: UTF8.self)
    }
}

struct LinkFieldError: Error {
    let reason: String
}

/// Whether a byte stays as itself in a link field: `[A-Za-z0-9._-]`.
@inline(__always)
func isLinkSafe(_ byte: UInt8) -> Bool {
    byte &- 0x30 < 10 || (byte | 0x20) &- 0x61 < 26 || byte == 0x2E || byte == 0x5F || byte == 0x2D
}

/// Keeps `[A-Za-z0-9._-]` and writes every other byte as `%XX` (uppercase hex).
func linkEscape(_ bytes: String.UTF8View) -> [UInt8] {
    var out: [UInt8] = []
    linkEscape(bytes, into: &out)
    return out
}

/// Appends ``linkEscape(_:)`` of `bytes` to `out`.
func linkEscape(_ bytes: String.UTF8View, into out: inout [UInt8]) {
    for byte in bytes {
        if isLinkSafe(byte) {
            out.append(byte)
        } else {
            out.append(UInt8(ascii: "%"))
            out.append(upperHexDigits[Int(byte >> 4)])
            out.append(upperHexDigits[Int(byte & 0xF)])
        }
    }
}

/// Reverses ``linkEscape(_:)``, accepting only its output: safe bytes and
/// `%XX` (uppercase) for unsafe bytes only, decoding to valid UTF-8.
func linkUnescape(_ bytes: ArraySlice<UInt8>) throws(LinkFieldError) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var index = bytes.startIndex
    while index < bytes.endIndex {
        let byte = bytes[index]
        if isLinkSafe(byte) {
            out.append(byte)
            index += 1
            continue
        }
        guard byte == UInt8(ascii: "%"), index + 2 < bytes.endIndex else {
            throw LinkFieldError(reason: "byte \(quotedForMessage(String(decoding: [byte], as: UTF8.self))) must be written %XX")
        }
        let high = bytes[index + 1], low = bytes[index + 2]
        // Uppercase hex only: one spelling per byte.
        guard let highValue = hexValue(high), let lowValue = hexValue(low),
              !isLowerHexDigit(high) || high &- 0x30 < 10, !isLowerHexDigit(low) || low &- 0x30 < 10 else {
            throw LinkFieldError(reason: "'%' must be followed by two uppercase hex digits")
        }
        let decoded = highValue << 4 | lowValue
        guard !isLinkSafe(decoded) else {
            throw LinkFieldError(reason: "%\(String(decoding: [high, low], as: UTF8.self)) escapes a character that is written as itself")
        }
        out.append(decoded)
        index += 3
    }
    guard let text = String(validating: out, as: UTF8.self) else {
        throw LinkFieldError(reason: "the escaped bytes are not valid UTF-8")
    }
    return text
}

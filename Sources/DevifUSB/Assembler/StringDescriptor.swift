/// USB string descriptors as bytes: pure Swift, no C imports, so the fuzz
/// target `strings` (Fuzz/) compiles it as is. ``StringDescriptorReader``
/// reads the bytes from a device and decodes them here.
enum StringDescriptor {
    /// The payload of a string descriptor: bLength must be at least 2 and
    /// not more than was received, the type must be 3 (STRING).
    static func payload(of bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count >= 2, bytes[1] == 3 else { return nil }
        let length = min(Int(bytes[0]), bytes.count)
        guard length >= 2 else { return nil }
        return Array(bytes[2..<length])
    }

    /// UTF-16LE to a String: an odd trailing byte is dropped, unpaired
    /// surrogates become U+FFFD, trailing NULs (padding) are removed.
    static func decode(utf16le bytes: [UInt8]) -> String {
        var units: [UInt16] = []
        units.reserveCapacity(bytes.count / 2)
        var i = 0
        while i + 1 < bytes.count {
            units.append(UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8)
            i += 2
        }
        while units.last == 0 { units.removeLast() }
        return String(decoding: units, as: UTF16.self)
    }
}

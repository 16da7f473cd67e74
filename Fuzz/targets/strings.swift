// Compiled with Sources/DevifUSB/Assembler/StringDescriptor.swift (pure Swift;
// StringDescriptorReader decodes what a device sends with it).
import DevifCore

/// A USB string descriptor, and what a device string becomes: the payload is
/// decoded (UTF-16LE, as libusb's fallback reads it; and as UTF-8 with
/// replacement, as sysfs and uevents give strings), and each text is a serial
/// and a location in links. The ids, interface, bus and class come from a
/// hash of the input, one link always uses the longest fixed parts
/// (hid, mi_xx, bus_xxxx), so the 255-byte bound is tested at its worst.
func fuzz(_ bytes: [UInt8]) {
    guard let payload = StringDescriptor.payload(of: bytes) else {
        precondition(bytes.count < 2 || bytes[1] != 3 || bytes[0] < 2,
                     "payload(of:) refused a string descriptor with bLength \(bytes[0]) and \(bytes.count) bytes")
        return
    }
    precondition(bytes.count >= 2 && bytes[1] == 3, "payload(of:) accepted a descriptor of type \(bytes.count > 1 ? bytes[1] : 0)")
    let length = min(Int(bytes[0]), bytes.count)
    precondition(payload.elementsEqual(bytes[2..<length]), "payload(of:) is not bytes[2..<min(bLength, count)]")

    let text = StringDescriptor.decode(utf16le: payload)
    precondition(text.utf16.count <= payload.count / 2, "decode gave more UTF-16 units than it was given")
    precondition(text.utf16.last != 0, "decode left trailing NUL padding")

    let sysfsText = String(decoding: payload, as: UTF8.self)
    var hash = FNV1a()
    hash.add(bytes)
    for raw in [text, sysfsText] {
        checkField(raw)
        // serial, serial@location or @location (ids from the hash), and the
        // longest link there is: hid, mi_xx, bus_xxxx, and the text twice.
        checkLink(identity(raw, hash: hash.value, longest: false), includeLocation: hash.value & 4 != 0, hash: hash.value)
        var noSerial = identity(raw, hash: hash.value, longest: true)
        noSerial.serialNumber = nil
        checkLink(noSerial, includeLocation: false, hash: hash.value)
        checkLink(identity(raw, hash: hash.value, longest: true), includeLocation: true, hash: hash.value)
    }
    // Different text, different link (a shortened field rests on SHA-256).
    if !text.utf8.elementsEqual(sysfsText.utf8) {
        let a = identity(text, hash: hash.value, longest: false).symbolicLink(for: guid(hash.value))
        let b = identity(sysfsText, hash: hash.value, longest: false).symbolicLink(for: guid(hash.value))
        precondition(a.rawValue != b.rawValue, "two different serials gave one link \(a.rawValue)")
    }
}

/// The link field of `raw`: exact when its escape fits the budget, otherwise
/// the longest prefix of whole scalars whose escape fits the prefix budget,
/// and the digest of all of it. It matches `raw` and reads back as itself.
func checkField(_ raw: String) {
    let field = LinkField(encoding: raw)
    let escaped = raw.utf8.reduce(0) { $0 + (safe($1) ? 1 : 3) }
    switch field {
    case .exact(let text):
        precondition(escaped <= LinkField.budget, "a field of \(escaped) escaped bytes was kept exact")
        precondition(text.utf8.elementsEqual(raw.utf8), "an exact field is not the raw text")
    case .shortened(let prefix, let digest):
        precondition(escaped > LinkField.budget, "a field of \(escaped) escaped bytes was shortened")
        precondition(raw.utf8.starts(with: prefix.utf8), "a shortened field's prefix is not a prefix of the text")
        precondition(digest == Digest128(sha256Of: raw.utf8), "a shortened field's digest is not SHA-256 of the text")
        let used = prefix.unicodeScalars.reduce(0) { $0 + escapedCost($1) }
        precondition(used <= LinkField.shortenedPrefixBudget, "a shortened prefix takes \(used) escaped bytes")
        precondition(!prefix.isEmpty, "a shortened field has an empty prefix")
        let rest = raw.unicodeScalars.dropFirst(prefix.unicodeScalars.count)
        precondition(prefix.unicodeScalars.elementsEqual(raw.unicodeScalars.prefix(prefix.unicodeScalars.count)),
                     "a shortened prefix does not end on a scalar of the text")
        if let next = rest.first {
            precondition(used + escapedCost(next) > LinkField.shortenedPrefixBudget,
                         "a shortened prefix is not the longest that fits")
        }
    }
    precondition(field.matches(raw), "a field does not match its own text")
    let encoded = field.encoded
    precondition(!encoded.isEmpty && encoded.utf8.count <= LinkField.budget,
                 "a field is \(encoded.utf8.count) bytes in a link")
}

/// The link of `id`: a single file name that reads back as itself.
func checkLink(_ id: InstanceIdentity, includeLocation: Bool, hash: UInt64) {
    let link = id.symbolicLink(for: guid(hash), includeLocation: includeLocation)
    let raw = link.rawValue
    let utf8 = Array(raw.utf8)
    precondition(!utf8.isEmpty && utf8.count <= SymbolicLink.maximumLength, "a link is \(utf8.count) bytes")
    precondition(utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") },
                 "a link has a byte that is not printable ASCII or is '/': \(raw.debugDescription)")
    precondition(raw != "." && raw != "..", "a link is . or ..")
    let parsed: SymbolicLink
    do { parsed = try SymbolicLink(parsing: raw) } catch {
        preconditionFailure("a link does not parse back: \(error)")
    }
    precondition(parsed.rawValue == raw, "a link parses back to another text")
    precondition(parsed.kind == id.kind && parsed.vendorID == id.vendorID && parsed.productID == id.productID
                 && parsed.interfaceNumber == id.interfaceNumber && parsed.busType == id.busType
                 && parsed.classGUID == link.classGUID, "a link parses back to other ids")
    precondition(parsed.serial == id.serialNumber.map(LinkField.init(encoding:)),
                 "a link's serial field does not parse back to the field of the serial")
    precondition(parsed.serial == link.serial && parsed.location == link.location, "a link's fields changed")
    let wantLocation = id.serialNumber == nil || includeLocation
    precondition((parsed.location != nil) == wantLocation, "a link has a location when it should not, or none")
    if wantLocation {
        precondition(parsed.location == LinkField(encoding: id.location),
                     "a link's location field does not parse back to the field of the location")
    }
    precondition(parsed.names(id), "a link does not name its own instance")
}

/// USB with the text as serial; or the longest fixed parts (hid, mi_xx,
/// bus_xxxx) with the text as serial and as location.
func identity(_ text: String, hash: UInt64, longest: Bool) -> InstanceIdentity {
    if longest {
        return InstanceIdentity(kind: .hid, vendorID: UInt16(truncatingIfNeeded: hash), productID: UInt16(truncatingIfNeeded: hash >> 16),
                                interfaceNumber: 0xFF, busType: BusType(rawValue: 0xFFFF), serialNumber: text, location: text)
    }
    let bus = BusType(rawValue: UInt16(truncatingIfNeeded: hash >> 32) % 0x20)
    return InstanceIdentity(kind: hash & 1 == 0 ? .usb : .hid, vendorID: UInt16(truncatingIfNeeded: hash >> 8),
                            productID: UInt16(truncatingIfNeeded: hash >> 24),
                            interfaceNumber: hash & 2 == 0 ? nil : UInt8(truncatingIfNeeded: hash >> 40),
                            busType: bus, serialNumber: text, location: "1-1.4")
}

func guid(_ hash: UInt64) -> GUID { GUID(high: hash, low: ~hash &* 0x9E37_79B9_7F4A_7C15) }

func safe(_ byte: UInt8) -> Bool {
    (byte >= 0x30 && byte <= 0x39) || ((byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A) || byte == 0x2E || byte == 0x5F || byte == 0x2D
}

func escapedCost(_ scalar: Unicode.Scalar) -> Int {
    scalar.isASCII ? (safe(UInt8(scalar.value)) ? 1 : 3) : 3 * String(scalar).utf8.count
}

struct FNV1a {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ bytes: [UInt8]) {
        for byte in bytes { value = (value ^ UInt64(byte)) &* 0x100_0000_01b3 }
    }
}

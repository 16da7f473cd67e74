/// A symbolic link: the persistent name of one instance in one class, shaped
/// like Windows' and safe as a single Linux file name. The grammar is in
/// LINK-FORMAT.md next to this file:
///
///     usb#vid_1209&pid_0001#SER-0001#{a5dcbf10-6530-11d2-901f-00c04fb951ed}
///     usb#vid_1209&pid_0002&mi_01#SER-0001#{…}
///     hid#vid_1209&pid_0001&bus_06#@uhid-0#{…}
///     usb#vid_1209&pid_0003#@1-1.4#{…}
///
/// A link is pure ASCII, at most 255 bytes, contains no `/` or NUL, and
/// different parts always give different links (beyond 88 escaped bytes a
/// field is shortened and injectivity rests on a 128-bit SHA-256 prefix).
/// Equality and ordering are those of ``rawValue`` (byte-wise, case-sensitive).
public struct SymbolicLink: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The link text.
    public let rawValue: String
    /// `usb` or `hid`: the link's first part.
    public let kind: DeviceKind
    /// The `vid_` part.
    public let vendorID: UInt16
    /// The `pid_` part.
    public let productID: UInt16
    /// The `mi_` part: the USB interface; nil when the link has none.
    public let interfaceNumber: UInt8?
    /// `.usb` when the link has no `bus_` part.
    public let busType: BusType
    /// Nil when the instance has no serial number.
    public let serial: LinkField?
    /// Present when there is no serial, or when the link was made with the location.
    public let location: LinkField?
    /// The last-resort disambiguator `!N` (N >= 2): set only when another
    /// present instance already had this serial *and* location (identical
    /// uhid devices, say), so that no instance goes unnamed. Unlike the rest
    /// of the link it depends on arrival order, so it is not stable across
    /// plugs. Nil for every other link.
    public let ordinal: Int?
    /// The class GUID, the link's last part.
    public let classGUID: GUID

    /// Linux NAME_MAX: no link is longer, whatever the device sends.
    public static let maximumLength = 255
    /// The largest ``ordinal``: with the 70 fixed bytes a real link has at
    /// most (`mi_` and `bus_` never occur together) and two 88-byte fields,
    /// `!` and 7 digits still fit in ``maximumLength``.
    public static let maximumOrdinal = 9_999_999

    /// The link of `identity` in class `classGUID`. The location is included
    /// when there is no serial number, or when `includeLocation` is set (the
    /// manager sets it when two present devices share a serial). An
    /// `ordinal` (2 ... ``maximumOrdinal``) implies the location: the manager
    /// gives one when serial and location are both taken.
    public init(identity: InstanceIdentity, classGUID: GUID, includeLocation: Bool = false, ordinal: Int? = nil) {
        precondition(ordinal.map { (2...Self.maximumOrdinal).contains($0) } ?? true, "an ordinal is 2 ... \(Self.maximumOrdinal)")
        let serial = identity.serialNumber.map(LinkField.init(encoding:))
        let location = (identity.serialNumber == nil || includeLocation || ordinal != nil)
            ? LinkField(encoding: identity.location) : nil
        self.init(kind: identity.kind, vendorID: identity.vendorID, productID: identity.productID,
                  interfaceNumber: identity.interfaceNumber, busType: identity.busType,
                  serial: serial, location: location, ordinal: ordinal, classGUID: classGUID)
    }

    private init(kind: DeviceKind, vendorID: UInt16, productID: UInt16, interfaceNumber: UInt8?,
                 busType: BusType, serial: LinkField?, location: LinkField?, ordinal: Int?, classGUID: GUID) {
        self.kind = kind
        self.vendorID = vendorID
        self.productID = productID
        self.interfaceNumber = interfaceNumber
        self.busType = busType
        self.serial = serial
        self.location = location
        self.ordinal = ordinal
        self.classGUID = classGUID
        self.rawValue = Self.render(kind: kind, vendorID: vendorID, productID: productID,
                                    interfaceNumber: interfaceNumber, busType: busType,
                                    serial: serial, location: location, ordinal: ordinal, classGUID: classGUID)
    }

    /// Parses a link back into its parts. Accepts exactly the texts this type
    /// produces (canonical escapes, lowercase hex, fixed part order), so
    /// `SymbolicLink(parsing: link.rawValue) == link`.
    public init(parsing text: String) throws(SymbolicLinkParseError) {
        func fail(_ reason: String) -> SymbolicLinkParseError {
            SymbolicLinkParseError(input: text, reason: reason)
        }
        // Hand-written loops throughout: parsing runs for every link a test or a
        // registry load touches, and generic algorithms are slow in debug builds.
        let bytes = Array(text.utf8)
        guard bytes.count <= Self.maximumLength else {
            throw fail("it is \(bytes.count) bytes long; links are at most \(Self.maximumLength)")
        }
        var hashes: [Int] = []
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte > 0x20 && byte < 0x7F else {
                throw fail("it contains a byte that is not printable ASCII; links are printable ASCII only")
            }
            if byte == UInt8(ascii: "#") { hashes.append(index) }
            index += 1
        }
        guard hashes.count == 3 else {
            throw fail("it has \(hashes.count + 1) '#'-separated parts; a link has 4 (kind#ids#instance#{guid})")
        }
        let kind: DeviceKind
        if hashes[0] == 3 && bytes[0] == UInt8(ascii: "u") && bytes[1] == UInt8(ascii: "s") && bytes[2] == UInt8(ascii: "b") {
            kind = .usb
        } else if hashes[0] == 3 && bytes[0] == UInt8(ascii: "h") && bytes[1] == UInt8(ascii: "i")
                    && bytes[2] == UInt8(ascii: "d") {
            kind = .hid
        } else {
            throw fail("the kind (first part) must be 'usb' or 'hid'")
        }

        // ids: vid_xxxx&pid_xxxx[&mi_xx][&bus_xx or &bus_xxxx]
        var ids = ByteReader(bytes: bytes, index: hashes[0] + 1, end: hashes[1])
        guard ids.take(vidLiteral), let vendorID = ids.lowerHex(4), ids.take(pidLiteral),
              let productID = ids.lowerHex(4) else {
            throw fail("the second part must start vid_xxxx&pid_xxxx (lowercase hex)")
        }
        var interfaceNumber: UInt8?
        var busType = BusType.usb
        if ids.take(miLiteral) {
            guard let value = ids.lowerHex(2) else { throw fail("mi_ must be followed by 2 lowercase hex digits") }
            interfaceNumber = UInt8(value)
        }
        if ids.take(busLiteral) {
            let digits = ids.remaining
            guard digits == 2 || digits == 4, let value = ids.lowerHex(digits), value != BusType.usb.rawValue,
                  (digits == 2) == (value <= 0xFF) else {
                throw fail("bus_ must be followed by 2 lowercase hex digits (4 above ff), and is left out for USB")
            }
            busType = BusType(rawValue: value)
        }
        guard ids.remaining == 0 else {
            throw fail("after vid_xxxx&pid_xxxx only &mi_xx and then &bus_xx may follow")
        }

        // instance: (serial | serial@location | @location) [!ordinal]
        var instance = bytes[(hashes[1] + 1)..<hashes[2]]
        var ordinal: Int?
        index = instance.startIndex
        while index < instance.endIndex && instance[index] != UInt8(ascii: "!") { index += 1 }
        if index < instance.endIndex {
            let digits = instance[(index + 1)...]
            var value = 0
            for d in digits {
                guard d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9"), value <= Self.maximumOrdinal else { value = 0; break }
                value = value * 10 + Int(d - UInt8(ascii: "0"))
            }
            guard digits.first != UInt8(ascii: "0"), (2...Self.maximumOrdinal).contains(value) else {
                throw fail("the ordinal after '!' must be a decimal number from 2 to \(Self.maximumOrdinal) without leading zeros")
            }
            ordinal = value
            instance = instance[..<index]
        }
        var atSigns: [Int] = []
        index = instance.startIndex
        while index < instance.endIndex {
            if instance[index] == UInt8(ascii: "@") { atSigns.append(index) }
            index += 1
        }
        guard ordinal == nil || atSigns.count == 1 else {
            throw fail("an ordinal ('!N') comes only after a location (serial@location!N or @location!N)")
        }
        guard atSigns.count <= 1 else { throw fail("the instance part has more than one '@'") }
        var serial: LinkField?
        var location: LinkField?
        do throws(LinkFieldError) {
            if let at = atSigns.first {
                if at != instance.startIndex { serial = try LinkField(decoding: instance[..<at]) }
                location = try LinkField(decoding: instance[(at + 1)...])
            } else {
                serial = try LinkField(decoding: instance)
            }
        } catch {
            throw fail("the instance part is not serial, serial@location or @location: \(error.reason)")
        }

        guard let classGUID = GUID(lowercaseBraced: bytes[(hashes[2] + 1)...]) else {
            throw fail("the last part must be the class GUID as {xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}, lowercase")
        }

        // Every part was checked to be exactly as ``render`` writes it (fixed
        // order, lowercase fixed-width hex, canonical escapes, exact fields within
        // the budget), so the text is the link's canonical form.
        self.kind = kind
        self.vendorID = vendorID
        self.productID = productID
        self.interfaceNumber = interfaceNumber
        self.busType = busType
        self.serial = serial
        self.location = location
        self.ordinal = ordinal
        self.classGUID = classGUID
        self.rawValue = text
    }

    public var description: String { rawValue }

    /// The text rendered afresh from the parts (equal to ``rawValue``; lets
    /// tests check that parsing and rendering agree).
    var renderedFromParts: String {
        Self.render(kind: kind, vendorID: vendorID, productID: productID, interfaceNumber: interfaceNumber,
                    busType: busType, serial: serial, location: location, ordinal: ordinal, classGUID: classGUID)
    }

    /// Whether this link names `identity` (in any class): same kind, ids and
    /// bus, a serial field that matches its serial (or both absent), and, if
    /// the link has a location, a matching location.
    public func names(_ identity: InstanceIdentity) -> Bool {
        guard kind == identity.kind, vendorID == identity.vendorID, productID == identity.productID,
              interfaceNumber == identity.interfaceNumber, busType == identity.busType else { return false }
        switch (serial, identity.serialNumber) {
        case (nil, nil): break
        case let (field?, raw?) where field.matches(raw): break
        default: return false
        }
        if let location { return location.matches(identity.location) }
        return identity.serialNumber != nil
    }

    public static func == (lhs: SymbolicLink, rhs: SymbolicLink) -> Bool { lhs.rawValue == rhs.rawValue }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }
    public static func < (lhs: SymbolicLink, rhs: SymbolicLink) -> Bool {
        lhs.rawValue.utf8.lexicographicallyPrecedes(rhs.rawValue.utf8)
    }

    /// Decodes from the link text (must parse).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do { try self.init(parsing: text) } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    /// Encodes as the link text.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    private static func render(kind: DeviceKind, vendorID: UInt16, productID: UInt16, interfaceNumber: UInt8?,
                               busType: BusType, serial: LinkField?, location: LinkField?, ordinal: Int?,
                               classGUID: GUID) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(Self.maximumLength)
        out.append(contentsOf: kind == .usb ? usbLiteral : hidLiteral)
        out.append(UInt8(ascii: "#"))
        out.append(contentsOf: vidLiteral)
        appendHex(vendorID, digits: 4, to: &out)
        out.append(contentsOf: pidLiteral)
        appendHex(productID, digits: 4, to: &out)
        if let interfaceNumber {
            out.append(contentsOf: miLiteral)
            appendHex(UInt16(interfaceNumber), digits: 2, to: &out)
        }
        if busType != .usb {
            out.append(contentsOf: busLiteral)
            appendHex(busType.rawValue, digits: busType.rawValue <= 0xFF ? 2 : 4, to: &out)
        }
        out.append(UInt8(ascii: "#"))
        serial?.append(to: &out)
        if let location {
            out.append(UInt8(ascii: "@"))
            location.append(to: &out)
        }
        if let ordinal {
            out.append(UInt8(ascii: "!"))
            out.append(contentsOf: String(ordinal).utf8)
        }
        out.append(UInt8(ascii: "#"))
        classGUID.appendText(to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

private let usbLiteral = Array("usb".utf8)
private let hidLiteral = Array("hid".utf8)
private let vidLiteral = Array("vid_".utf8)
private let pidLiteral = Array("&pid_".utf8)
private let miLiteral = Array("&mi_".utf8)
private let busLiteral = Array("&bus_".utf8)

/// Appends `value` as `digits` lowercase hex digits.
private func appendHex(_ value: UInt16, digits: Int, to out: inout [UInt8]) {
    var shift = 4 * (digits - 1)
    while shift >= 0 {
        out.append(lowerHexDigits[Int(value >> UInt16(shift)) & 0xF])
        shift -= 4
    }
}

/// Reads `bytes[index..<end]` front to back.
private struct ByteReader {
    let bytes: [UInt8]
    var index: Int
    let end: Int

    var remaining: Int { end - index }

    /// Consumes `literal` if the bytes continue with it.
    mutating func take(_ literal: [UInt8]) -> Bool {
        guard remaining >= literal.count else { return false }
        var offset = 0
        while offset < literal.count {
            guard bytes[index + offset] == literal[offset] else { return false }
            offset += 1
        }
        index += literal.count
        return true
    }

    /// Consumes exactly `digits` lowercase hex digits.
    mutating func lowerHex(_ digits: Int) -> UInt16? {
        guard remaining >= digits else { return nil }
        var value: UInt16 = 0
        var offset = 0
        while offset < digits {
            let byte = bytes[index + offset]
            guard isLowerHexDigit(byte) else { return nil }
            value = value << 4 | UInt16(hexValue(byte)!)
            offset += 1
        }
        index += digits
        return value
    }
}

/// Text that is not a symbolic link.
public struct SymbolicLinkParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The text as given.
    public let input: String
    /// What was wrong with it.
    public let reason: String

    public var description: String {
        "\(quotedForMessage(input, limit: 300)) is not a devif symbolic link: \(reason). "
            + "Expected kind#vid_xxxx&pid_xxxx[&mi_xx][&bus_xx]#instance#{class guid}, "
            + "e.g. usb#vid_1209&pid_0001#SER-0001#{a5dcbf10-6530-11d2-901f-00c04fb951ed}"
    }
}

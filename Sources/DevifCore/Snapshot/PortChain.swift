/// Where a USB device is plugged: its bus and the hub ports from the root hub
/// down, written as sysfs names it: bus 1, ports [1, 4] is `1-1.4`; a root hub
/// (no ports) is `usb1`.
public struct PortChain: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The USB bus number (libusb's bus number, sysfs `busnum`).
    public var bus: UInt8
    /// Port numbers from the root hub down; empty for a root hub itself.
    public var ports: [UInt8]

    /// A chain from its bus and its ports, from the root hub down.
    public init(bus: UInt8, ports: [UInt8]) {
        self.bus = bus
        self.ports = ports
    }

    /// Parses the sysfs form (`1-1.4`, `usb1`). Numbers are decimal without
    /// leading zeros; ports are 1...255. Returns nil for anything else.
    public init?(parsing text: some StringProtocol) {
        let text = Substring(text)
        if text.hasPrefix("usb") {
            guard let bus = parseCanonicalDecimal(text.dropFirst(3)) else { return nil }
            self.init(bus: bus, ports: [])
            return
        }
        guard let dash = text.firstIndex(of: "-"),
              let bus = parseCanonicalDecimal(text[..<dash]) else { return nil }
        var ports: [UInt8] = []
        for part in text[text.index(after: dash)...].split(separator: ".", omittingEmptySubsequences: false) {
            guard let port = parseCanonicalDecimal(part), port != 0 else { return nil }
            ports.append(port)
        }
        self.init(bus: bus, ports: ports)
    }

    public var description: String {
        if ports.isEmpty { return "usb" + String(bus) }
        // Built by hand: `joined(separator:)` went through generic witness
        // lookups, a few percent of a plug's assembly in `perf`.
        var text = String(bus)
        text.reserveCapacity(4 * (ports.count + 1))
        for (i, port) in ports.enumerated() {
            text.append(i == 0 ? "-" : ".")
            text.append(String(port))
        }
        return text
    }

    public static func < (lhs: PortChain, rhs: PortChain) -> Bool {
        lhs.bus != rhs.bus ? lhs.bus < rhs.bus : lhs.ports.lexicographicallyPrecedes(rhs.ports)
    }

    /// Decodes from the sysfs text form.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let chain = PortChain(parsing: text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "\(quotedForMessage(text)) is not a port chain like 1-1.4")
        }
        self = chain
    }

    /// Encodes as the sysfs text form.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Decimal 0...255 with no sign and no leading zero (so each value has one spelling).
private func parseCanonicalDecimal(_ text: Substring) -> UInt8? {
    let bytes = Array(text.utf8)
    guard (1...3).contains(bytes.count), bytes.allSatisfy({ (48...57).contains($0) }),
          bytes.count == 1 || bytes[0] != UInt8(ascii: "0") else { return nil }
    return UInt8(text)
}

/// usbip's record of one attach, which the `usbip` tool writes after
/// attaching (`/run/vhci_hcd/port<N>`, N the vhci port) and reads for
/// `usbip port`: `HOST PORT BUSID\n`. devif reads and writes the same
/// records. The text is untrusted: anyone with write access there wrote it.
public struct USBIPAttachRecord: Hashable, Sendable {
    /// The exporting host as the attach named it (a name or an address).
    public var host: String
    /// usbipd's TCP port (or service name) there, usually `3240`.
    public var port: String
    /// The device's bus id on the exporting host.
    public var busID: String

    /// The longest field accepted, in UTF-8 bytes.
    public static let maximumFieldLength = 255

    /// A record of these fields. It reads back (``parse(_:)`` of its
    /// ``fileText``) when ``isValid``.
    public init(host: String, port: String, busID: String) {
        self.host = host
        self.port = port
        self.busID = busID
    }

    /// Whether each field is 1 to ``maximumFieldLength`` bytes without
    /// whitespace or control characters: what ``parse(_:)`` accepts.
    public var isValid: Bool {
        [host, port, busID].allSatisfy { field in
            (1...Self.maximumFieldLength).contains(field.utf8.count)
                && !field.unicodeScalars.contains { isControlScalar($0) || isRecordSpace($0) }
        }
    }

    /// The record in a record file's text: exactly three fields separated
    /// by whitespace (spaces, tabs, newlines), each valid (``isValid``); nil otherwise.
    public static func parse(_ text: String) -> USBIPAttachRecord? {
        guard text.utf8.count <= 3 * (maximumFieldLength + 1) + 64 else { return nil }
        let fields = text.unicodeScalars.split(whereSeparator: isRecordSpace)
        guard fields.count == 3 else { return nil }
        let record = USBIPAttachRecord(host: String(fields[0]), port: String(fields[1]), busID: String(fields[2]))
        return record.isValid ? record : nil
    }

    /// The record file's text, as the usbip tool writes it: `HOST PORT BUSID\n`.
    public var fileText: String { "\(host) \(port) \(busID)\n" }

    /// The record file's name for vhci port `port` (`port3`), in `/run/vhci_hcd`.
    public static func fileName(port: Int) -> String { "port\(port)" }
}

/// C's `isspace` in the C locale: what separates `fscanf`'s `%s` fields.
private func isRecordSpace(_ scalar: Unicode.Scalar) -> Bool {
    scalar == " " || (0x09...0x0D).contains(scalar.value)
}

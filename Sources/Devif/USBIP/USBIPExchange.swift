import DevifCore
import DevifLinux

/// One request to usbipd and its reply, read exactly as the reply readers
/// ask, so nothing a peer sends is taken on trust or read past.
enum USBIPExchange {
    static func deviceList(_ connection: borrowing TCPConnection, deadline: ContinuousClock.Instant,
                           what: String) throws(USBIPError) -> [USBIPExportedDevice] {
        var reader = USBIPDeviceListReader()
        try send(USBIPWire.deviceListRequest, connection, deadline: deadline, what: what)
        while true {
            let bytes = try receive(reader.bytesWanted, connection, deadline: deadline, what: what)
            do {
                if let devices = try reader.consume(bytes) { return devices }
            } catch { throw wire(error, what) }
        }
    }

    static func importDevice(_ busID: String, _ connection: borrowing TCPConnection, deadline: ContinuousClock.Instant,
                             what: String) throws(USBIPError) -> USBIPExportedDevice {
        let request: [UInt8]
        do { request = try USBIPWire.importRequest(busID: busID) } catch { throw wire(error, what) }
        var reader = USBIPImportReader(busID: busID)
        try send(request, connection, deadline: deadline, what: what)
        while true {
            let bytes = try receive(reader.bytesWanted, connection, deadline: deadline, what: what)
            do {
                if let device = try reader.consume(bytes) { return device }
            } catch { throw wire(error, what) }
        }
    }

    private static func send(_ bytes: [UInt8], _ connection: borrowing TCPConnection, deadline: ContinuousClock.Instant,
                             what: String) throws(USBIPError) {
        do { try connection.send(bytes, deadline: deadline) } catch { throw .transport(error, what) }
    }

    private static func receive(_ count: Int, _ connection: borrowing TCPConnection, deadline: ContinuousClock.Instant,
                                what: String) throws(USBIPError) -> [UInt8] {
        do { return try connection.receive(exactly: count, deadline: deadline) } catch { throw .transport(error, what) }
    }

    private static func wire(_ error: USBIPWireError, _ what: String) -> USBIPError {
        if case .refused(let status, let busID) = error {
            var text = "\(what): \(error)"
            if status == .deviceBusy {
                text += busID == nil ? "" : "; if it was attached here before a network loss, usbipd on the exporting host "
                    + "has not noticed (it sets no keepalive): free it there (usbip unbind, or replug it) and attach again"
            }
            return USBIPError(.refused, text, status: status.rawValue)
        }
        return USBIPError(.protocolViolation, "\(what): \(error)")
    }
}

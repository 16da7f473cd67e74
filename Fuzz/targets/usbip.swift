import DevifCore

/// usbipd's replies (device list; import of "1-1"), each read as the reader
/// asks and again in small pieces, which must agree; vhci-hcd's `status`
/// text and usbip's attach record from the same bytes as UTF-8.
func fuzz(_ bytes: [UInt8]) {
    let piece = 1 + Int(bytes.first ?? 0) % 13

    var list = USBIPDeviceListReader(), listInPieces = USBIPDeviceListReader()
    let devices = feed(bytes, piece: .max, wanted: { list.bytesWanted }, consume: { b throws(USBIPWireError) in try list.consume(b) })
    let devicesInPieces = feed(bytes, piece: piece, wanted: { listInPieces.bytesWanted },
                               consume: { b throws(USBIPWireError) in try listInPieces.consume(b) })
    precondition(devices == devicesInPieces, "device list: \(devices) read whole, \(devicesInPieces) in pieces of \(piece)")
    if case .done(let found, _) = devices {
        precondition(found.count <= USBIPWire.maximumDeviceCount, "\(found.count) devices")
        for device in found {
            precondition(device.interfaces.count == Int(device.numberOfInterfaces), "interfaces of \(device)")
        }
        // What fits its fields again encodes to a reply that reads back the same.
        if found.allSatisfy({ $0.path.utf8.count <= 256 && $0.busID.utf8.count <= 32 }) {
            var again = USBIPDeviceListReader()
            let reread = feed(USBIPWire.deviceListReply(found), piece: .max, wanted: { again.bytesWanted },
                              consume: { b throws(USBIPWireError) in try again.consume(b) })
            guard case .done(let back, _) = reread, back == found else { preconditionFailure("re-encoded list read back as \(reread)") }
        }
    }

    var imported = USBIPImportReader(busID: "1-1"), importedInPieces = USBIPImportReader(busID: "1-1")
    let device = feed(bytes, piece: .max, wanted: { imported.bytesWanted }, consume: { b throws(USBIPWireError) in try imported.consume(b) })
    let deviceInPieces = feed(bytes, piece: piece, wanted: { importedInPieces.bytesWanted },
                              consume: { b throws(USBIPWireError) in try importedInPieces.consume(b) })
    precondition(device == deviceInPieces, "import: \(device) read whole, \(deviceInPieces) in pieces of \(piece)")
    if case .done(let found, let used) = device {
        precondition(found.busID == "1-1" && found.interfaces.isEmpty && used == 8 + 312, "imported \(found) from \(used) bytes")
    }

    let text = String(decoding: bytes, as: UTF8.self)
    let ports = VHCIPortStatus.parse(text)
    precondition(ports.count <= text.split(whereSeparator: \.isNewline).count, "\(ports.count) ports")
    for port in ports {
        precondition(port.port >= 0 && !port.localBusID.isEmpty && !port.localBusID.contains(" "), "port \(port)")
    }
    for speed: UInt32 in [0, 3, 5, 6] {
        if let free = VHCIPortStatus.freePort(in: ports, forSpeed: speed) {
            precondition(ports.contains { $0.port == free && $0.isFree && $0.hub == .init(forSpeed: speed) }, "free port \(free)")
        }
    }

    if let record = USBIPAttachRecord.parse(text) {
        precondition(record.isValid && USBIPAttachRecord.parse(record.fileText) == record, "record \(record)")
    }
}

/// How a reply read ended: complete (and how many bytes it took), failed,
/// or still wanting bytes when the input ran out.
enum Outcome<Reply: Equatable>: Equatable {
    case done(Reply, used: Int)
    case failed(USBIPWireError)
    case short(used: Int)
}

/// Feeds `bytes` in reads of what the reader wants, at most `piece` bytes each.
func feed<Reply: Equatable>(_ bytes: [UInt8], piece: Int, wanted: () -> Int,
                            consume: ([UInt8]) throws(USBIPWireError) -> Reply?) -> Outcome<Reply> {
    var used = 0
    while used < bytes.count {
        let n = min(piece, wanted(), bytes.count - used)
        precondition(n > 0, "the reader wants nothing before its reply is read")
        do {
            let reply = try consume(Array(bytes[used ..< used + n]))
            used += n
            if let reply {
                precondition(wanted() == 0, "a complete reader wants \(wanted()) more bytes")
                return .done(reply, used: used)
            }
        } catch {
            precondition(wanted() == 0, "a failed reader wants \(wanted()) more bytes")
            return .failed(error)
        }
    }
    precondition(wanted() > 0, "a reader wanting nothing returned no reply")
    return .short(used: used)
}

import DevifCore

/// Parses raw USB descriptors as the kernel exposes them in sysfs
/// (`/sys/bus/usb/devices/<dev>/descriptors`: the 18-byte device descriptor,
/// then every configuration's full descriptor set). The bytes came from the
/// device: every length is checked, nothing is trusted.
enum DescriptorParser {
    enum Failure: Error, Equatable, CustomStringConvertible {
        case shortDeviceDescriptor(Int)
        case notADeviceDescriptor

        var description: String {
            switch self {
            case .shortDeviceDescriptor(let n): "the device descriptor is \(n) bytes, not 18"
            case .notADeviceDescriptor: "the descriptors do not start with a device descriptor"
            }
        }
    }

    /// The device descriptor's fields and every configuration that parses;
    /// what did not parse is listed in `problems`.
    static func parse(_ bytes: [UInt8], bus: UInt8, ports: [UInt8], address: UInt8) throws(Failure) -> RawDevice {
        guard bytes.count >= 18 else { throw .shortDeviceDescriptor(bytes.count) }
        guard bytes[0] >= 18, bytes[1] == 1 else { throw .notADeviceDescriptor }
        var device = RawDevice(
            bcdUSB: le16(bytes, 2), vendorID: le16(bytes, 8), productID: le16(bytes, 10), bcdDevice: le16(bytes, 12),
            deviceClass: ClassTriple(bytes[4], bytes[5], bytes[6]),
            manufacturerIndex: bytes[14], productIndex: bytes[15], serialIndex: bytes[16],
            declaredConfigurations: bytes[17], configurations: [], bus: bus, ports: ports, address: address)
        // sysfs ignores the device's wTotalLength (the kernel may have cut a
        // configuration short): a configuration ends where the next
        // configuration descriptor starts, or at the end (as libusb does).
        var offset = Int(bytes[0])
        var index = 0
        while offset < bytes.count, index < Int(device.declaredConfigurations) {
            let end = index + 1 < Int(device.declaredConfigurations)
                ? nextConfiguration(in: bytes, after: offset) : bytes.count
            switch parseConfiguration(bytes[offset..<end]) {
            case .success(let configuration): device.configurations.append(configuration)
            case .failure(let problem): device.problems.append("configuration \(index): \(problem)")
            }
            offset = end
            index += 1
        }
        if device.configurations.count < Int(device.declaredConfigurations), device.problems.isEmpty {
            device.problems.append("\(device.configurations.count) of \(device.declaredConfigurations) configurations present")
        }
        return device
    }

    /// Where the configuration descriptor after the one at `start` begins (or the end).
    private static func nextConfiguration(in bytes: [UInt8], after start: Int) -> Int {
        var offset = start + max(Int(bytes[start]), 2)
        while offset + 1 < bytes.count {
            let length = Int(bytes[offset])
            if bytes[offset + 1] == 2 { return offset }
            guard length >= 2 else { return bytes.count }
            offset += length
        }
        return bytes.count
    }

    struct Problem: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// One configuration's descriptor set: the configuration descriptor, then
    /// interface, endpoint and other descriptors in any order.
    static func parseConfiguration(_ bytes: ArraySlice<UInt8>) -> Result<RawConfiguration, Problem> {
        let b = Array(bytes)
        guard b.count >= 9, b[0] >= 9, b[1] == 2 else {
            return .failure(Problem("not a configuration descriptor (\(b.count) bytes)"))
        }
        var configuration = RawConfiguration(value: b[5], interfaces: [])
        var current: RawInterface?
        var expectedEndpoints = 0
        var offset = Int(b[0])
        while offset < b.count {
            guard offset + 2 <= b.count else { break }  // a stray trailing byte
            let length = Int(b[offset]), type = b[offset + 1]
            guard length >= 2, offset + length <= b.count else {
                // The rest is unreadable; keep what was parsed.
                break
            }
            let d = b[offset..<(offset + length)]
            let base = d.startIndex
            switch type {
            case 4 where length >= 9:
                if let done = current { configuration.interfaces.append(done) }
                current = RawInterface(
                    descriptor: USBInterface(number: d[base + 2], alternateSetting: d[base + 3],
                                             interfaceClass: ClassTriple(d[base + 5], d[base + 6], d[base + 7])),
                    stringIndex: d[base + 8])
                expectedEndpoints = Int(d[base + 4])
            case 5 where length >= 7:
                if current != nil, current!.descriptor.endpoints.count < expectedEndpoints {
                    current!.descriptor.endpoints.append(USBEndpoint(
                        address: d[base + 2], attributes: d[base + 3],
                        maxPacketSize: UInt16(d[base + 4]) | UInt16(d[base + 5]) << 8, interval: d[base + 6]))
                }
            default:
                break  // class-specific, association, companion...: not part of the snapshot
            }
            offset += length
        }
        if let done = current { configuration.interfaces.append(done) }
        return .success(configuration)
    }

    private static func le16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
}

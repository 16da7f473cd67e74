import DevifCore

/// What the descriptors say about a device, before strings and access are
/// known: the assembler's input, from libusb or from sysfs `descriptors`.
struct RawDevice: Sendable {
    /// bcdUSB: 0x0201 and later have a BOS descriptor (MS OS 2.0 lives there).
    var bcdUSB: UInt16 = 0
    var vendorID: UInt16
    var productID: UInt16
    var bcdDevice: UInt16
    var deviceClass: ClassTriple
    var manufacturerIndex: UInt8
    var productIndex: UInt8
    var serialIndex: UInt8
    /// bNumConfigurations as the device declared it.
    var declaredConfigurations: UInt8
    var configurations: [RawConfiguration]
    var bus: UInt8
    var ports: [UInt8]
    var address: UInt8
    /// What could not be read, for a notice.
    var problems: [String] = []

    var portChain: PortChain { PortChain(bus: bus, ports: ports) }
}

struct RawConfiguration: Sendable {
    var value: UInt8
    var interfaces: [RawInterface]
}

struct RawInterface: Sendable {
    /// The descriptor with `interfaceString` still nil.
    var descriptor: USBInterface
    /// iInterface.
    var stringIndex: UInt8
}

extension RawDevice {
    /// Every string index the device uses (device strings and interface
    /// strings of every configuration), 0 excluded.
    var stringIndexes: Set<UInt8> {
        var set: Set<UInt8> = [manufacturerIndex, productIndex, serialIndex]
        for c in configurations { for i in c.interfaces { set.insert(i.stringIndex) } }
        set.remove(0)
        return set
    }
}

import DevifCore
import DevifLinux

/// One USB device, found from its usbfs node alone: what `devif-usb rules
/// names` (run by udev for every event) needs, without the cost of a source.
extension USBSource {
    /// What ``snapshot(ofNode:options:)`` read.
    package struct NodeSnapshot: Sendable {
        package var snapshot: DeviceSnapshot
        /// What could not be read, one line each (the assembler's problems).
        package var problems: [String]
    }

    /// The usbfs character major (`/dev/bus/usb/BBB/DDD`).
    package static let usbDeviceMajor: UInt32 = 189

    /// usbfs numbers a device's node (bus, devnum) as minor (bus-1)*128 + (devnum-1).
    package static func usbfsMinor(bus: Int, devnum: Int) -> UInt32? {
        guard (1...256).contains(bus), (1...128).contains(devnum) else { return nil }
        return UInt32((bus - 1) * 128 + (devnum - 1))
    }

    /// The snapshot of the USB device whose usbfs node is `node`, made as the
    /// source makes an arrival's (the same descriptor parser and the same
    /// assembler: node and driver-binding waits, strings and the active
    /// configuration from sysfs, access), but from that device's sysfs
    /// directory alone: `/sys/dev/char/189:M`, its `busnum`/`devnum` checked
    /// against the node's minor. No libusb context is created, the device is
    /// never opened and no other device is read. So strings the kernel did
    /// not cache stay absent and MS OS descriptors are not read: the
    /// snapshot's ``DeviceSnapshot/firmwareGUIDs`` is empty (nothing
    /// remembers them per device).
    package static func snapshot(ofNode node: String, options: Options = Options()) -> Result<NodeSnapshot, NodeLookupError> {
        let found: CharacterDeviceNode
        switch CharacterDeviceNode.lookUp(node) {
        case .success(let n): found = n
        case .failure(let error): return .failure(error)
        }
        guard found.major == usbDeviceMajor else {
            return .failure(NodeLookupError("\(node) is not a USB device node (major \(found.major), not \(usbDeviceMajor))"))
        }
        let dir = found.directory
        guard let bus = Sysfs.decimal(dir + "/busnum"), let devnum = Sysfs.decimal(dir + "/devnum"),
              usbfsMinor(bus: bus, devnum: devnum) == found.minor else {
            return .failure(NodeLookupError("\(node): \(dir) is not the device numbered \(found.major):\(found.minor) (gone or replaced)"))
        }
        let raw: RawDevice
        do {
            guard let read = try RawDevice(sysfsDevpath: String(dir.dropFirst(4))) else {
                return .failure(NodeLookupError("\(node): \(dir) is not a readable USB device (gone?)"))
            }
            raw = read
        } catch {
            return .failure(NodeLookupError("\(node): its descriptors in sysfs are unreadable (\(error))"))
        }
        var options = options
        if options.msOS10ProbeRules == nil { options.msOS10ProbeRules = [] }  // never asked: the device is not opened
        let result = USBAssembler(options: options).assemble(raw, opener: .never)
        if result.gone { return .failure(NodeLookupError("\(node): the device left while it was read")) }
        return .success(NodeSnapshot(snapshot: result.snapshot, problems: result.problems))
    }
}

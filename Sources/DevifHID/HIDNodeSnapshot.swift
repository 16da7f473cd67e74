import DevifCore
import DevifLinux
import Glibc

/// One hidraw node, resolved from its sysfs directory alone: what
/// `devif-usb rules names` (run by udev for every event) needs, without the
/// cost of a source.
extension HIDSource {
    /// The snapshot of the hidraw node `node`, made as the source makes an
    /// arrival's (``HIDResolver``: the report descriptor, the HID device's
    /// uevent, the USB parent's strings and interface, access), from
    /// `/sys/dev/char/MAJOR:MINOR` alone. hidapi is not asked (its
    /// enumeration reads every device; on USB, and for HID devices whose
    /// kernel facts are complete, it adds nothing a link or class depends
    /// on), no udev context is made, no other node is read. A node whose
    /// HID device's uevent cannot be read yet is read again every
    /// `retryInterval` for up to `resolveTimeout`, then reported with what
    /// sysfs gave (as the source does).
    package static func snapshot(ofNode node: String, resolveTimeout: Duration = .seconds(2),
                                 retryInterval: Duration = .milliseconds(100)) -> Result<DeviceSnapshot, NodeLookupError> {
        let found: CharacterDeviceNode
        switch CharacterDeviceNode.lookUp(node) {
        case .success(let n): found = n
        case .failure(let error): return .failure(error)
        }
        guard Sysfs.subsystem(of: found.directory) == "hidraw" else {
            return .failure(NodeLookupError("\(node) is not a hidraw node (\(found.directory))"))
        }
        let clock = ContinuousClock()
        let deadline = clock.now + resolveTimeout
        while true {
            guard let facts = HIDResolver.read(syspath: found.directory, devnode: nil) else {
                return .failure(NodeLookupError("\(node): \(found.directory) is gone"))
            }
            switch HIDResolver.outcome(of: facts, api: nil, hidapiConsulted: false) {
            case .ready(let snapshot):
                return .success(snapshot)
            case .notYet(let partial):
                guard clock.now < deadline else { return .success(partial) }
                sleepThread(retryInterval)
            }
        }
    }
}

/// Sleeps the calling thread (the single-node path has no event loop).
private func sleepThread(_ duration: Duration) {
    usleep(UInt32(clamping: duration.microseconds))
}

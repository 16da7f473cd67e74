// Owners of libudev handles: each releases its handle in deinit, and is used
// by one thread at a time (the source's monitor thread after start()).
import CUdev
import DevifLinux
import Glibc

/// A hidraw node appearing or going away, as either monitor reports it.
struct HidrawChange: Sendable, Equatable {
    enum Action: Sendable, Equatable { case add, remove }
    var action: Action
    /// Canonical sysfs path (`/sys/devices/.../hidraw/hidraw0`).
    var syspath: String
    /// `/dev/hidraw0`, when known.
    var devnode: String?
}

/// A `struct udev` context.
final class UdevContext {
    let raw: OpaquePointer

    init?() {
        guard let raw = udev_new() else { return nil }
        self.raw = raw
    }

    deinit { udev_unref(raw) }

    /// Every hidraw node sysfs has now (libudev scans sysfs; this works
    /// without udevd too). Devnodes come from each node's `DEVNAME`.
    func enumerateHidraw() -> [HidrawChange] {
        guard let enumerate = udev_enumerate_new(raw) else { return [] }
        defer { udev_enumerate_unref(enumerate) }
        guard udev_enumerate_add_match_subsystem(enumerate, "hidraw") >= 0,
              udev_enumerate_scan_devices(enumerate) >= 0 else { return [] }
        var result: [HidrawChange] = []
        var entry = udev_enumerate_get_list_entry(enumerate)
        while let current = entry {
            if let name = udev_list_entry_get_name(current) {
                let syspath = String(cString: name)
                var devnode: String?
                if let device = udev_device_new_from_syspath(raw, name) {
                    devnode = udev_device_get_devnode(device).map { String(cString: $0) }
                    udev_device_unref(device)
                }
                result.append(HidrawChange(action: .add, syspath: syspath, devnode: devnode))
            }
            entry = udev_list_entry_get_next(current)
        }
        return result
    }
}

/// libudev's monitor of udevd's processed events (netlink group "udev"),
/// filtered to subsystem hidraw: an event arrives after udevd ran its rules
/// (permissions and symbolic links are in place).
final class UdevMonitor {
    private let context: UdevContext
    let raw: OpaquePointer
    /// The monitor's socket (non-blocking): poll it for POLLIN.
    let fileDescriptor: Int32

    enum Failure: Error { case create, filter, enable(Int32) }

    init(context: UdevContext) throws(Failure) {
        self.context = context
        guard let raw = udev_monitor_new_from_netlink(context.raw, "udev") else { throw .create }
        self.raw = raw
        guard udev_monitor_filter_add_match_subsystem_devtype(raw, "hidraw", nil) >= 0 else {
            udev_monitor_unref(raw)
            throw .filter
        }
        // Big enough for a burst of plugs; libudev uses SO_RCVBUFFORCE
        // (effective as root) and the attempt is harmless otherwise.
        _ = udev_monitor_set_receive_buffer_size(raw, 4 << 20)
        let rc = udev_monitor_enable_receiving(raw)
        guard rc >= 0 else {
            udev_monitor_unref(raw)
            throw .enable(-rc)
        }
        fileDescriptor = udev_monitor_get_fd(raw)
    }

    deinit { udev_monitor_unref(raw) }

    enum Received { case change(HidrawChange), overflow }

    /// The next add/remove, nil when nothing is waiting; other actions
    /// (change, bind) are skipped.
    func receive() -> Received? {
        while true {
            errno = 0
            guard let device = udev_monitor_receive_device(raw) else {
                return errno == ENOBUFS ? .overflow : nil
            }
            defer { udev_device_unref(device) }
            guard let actionText = udev_device_get_action(device),
                  let syspath = udev_device_get_syspath(device) else { continue }
            let action: HidrawChange.Action
            switch String(cString: actionText) {
            case "add": action = .add
            case "remove": action = .remove
            default: continue
            }
            return .change(HidrawChange(action: action, syspath: String(cString: syspath),
                                        devnode: udev_device_get_devnode(device).map { String(cString: $0) }))
        }
    }
}

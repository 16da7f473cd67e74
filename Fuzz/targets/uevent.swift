import DevifCore

/// Kernel uevents: a netlink message and a sysfs `uevent` file.
func fuzz(_ bytes: [UInt8]) {
    if let e = try? Uevent(netlinkMessage: bytes) { _ = (e.action, e.devpath, e["DEVTYPE"]) }
    if let e = try? Uevent(ueventFile: bytes) { _ = e["DEVNAME"] }
}

import DevifCore
import Glibc

/// The kernel's USB/IP importer, `vhci-hcd`, through its sysfs files, and
/// the attach records the `usbip` tool keeps beside it. devif reads and
/// writes the same records, so devices attached by either are named alike.
package enum VHCI {
    /// Where vhci-hcd's control files are: all on its first controller.
    package static let controlDirectory = "/sys/devices/platform/vhci_hcd.0"
    /// usbip's attach records (`/var/run/vhci_hcd`, /var/run being /run).
    package static let recordDirectory = "/run/vhci_hcd"

    /// Whether vhci-hcd is loaded.
    package static var isLoaded: Bool { Sysfs.exists(controlDirectory + "/attach") }

    /// Every port of every vhci controller (`status`, `status.1`, ...).
    package static func ports() -> [VHCIPortStatus] {
        var all: [VHCIPortStatus] = []
        for k in 0..<128 {
            let file = controlDirectory + (k == 0 ? "/status" : "/status.\(k)")
            guard let text = Sysfs.string(file, limit: 1 << 16) else { break }
            all += VHCIPortStatus.parse(text)
        }
        return all
    }

    /// Whether the USB device at `sysfsPath` (a path under /sys/devices) is
    /// on a vhci bus below its root hub, that is, imported over USB/IP (vhci's
    /// own root hubs are local).
    package static func isImported(sysfsPath: String) -> Bool {
        // A plain byte scan: this runs for every USB arrival, and the
        // generic `firstRange(of:)` took about 7 µs a call (0.3 ms in the
        // lab VM, an eighth of a plug's arrival).
        guard sysfsPath.containsASCII("/vhci_hcd."),
              let chain = PortChain(parsing: Sysfs.name(of: sysfsPath)) else { return false }
        return !chain.ports.isEmpty
    }

    /// The origin of the imported USB device at `sysfsPath`: the vhci port
    /// whose device it is (or whose hub it is behind) and that port's attach
    /// record. Nil when the device is not imported, its port is not in use
    /// (it is leaving), or no record names the port yet (the `usbip` tool
    /// writes it just after attaching).
    package static func origin(ofUSBDevice sysfsPath: String) -> RemoteOrigin? {
        guard isImported(sysfsPath: sysfsPath) else { return nil }
        // .../vhci_hcd.K/usbB/B-P[.Q...]: the port's device is the first
        // component after the root hub; deeper ones sit behind an imported hub.
        let parts = sysfsPath.split(separator: "/")
        guard let root = parts.firstIndex(where: { $0.hasPrefix("usb") && Int($0.dropFirst(3)) != nil }),
              root + 1 < parts.count else { return nil }
        let name = parts[parts.count - 1]
        guard let chain = PortChain(parsing: name), !chain.ports.isEmpty else { return nil }
        let top = "\(chain.bus)-\(chain.ports[0])"
        guard let port = ports().first(where: { $0.isInUse && $0.localBusID == top })?.port,
              let record = readRecord(port: port) else { return nil }
        // Behind an imported hub: the remote bus id goes on down the same ports.
        let below = chain.ports.dropFirst().map(String.init).joined(separator: ".")
        return RemoteOrigin(host: record.host, port: record.port,
                            busID: below.isEmpty ? record.busID : record.busID + "." + below, vhciPort: port)
    }

    /// The attach record of vhci port `port`, if one is there.
    package static func readRecord(port: Int) -> USBIPAttachRecord? {
        Sysfs.string(recordDirectory + "/" + USBIPAttachRecord.fileName(port: port), limit: 1024)
            .flatMap(USBIPAttachRecord.parse)
    }

    /// Writes the attach record of `port` as the usbip tool does (its
    /// folder 0700, owned by root).
    package static func writeRecord(_ record: USBIPAttachRecord, port: Int) throws(LinuxError) {
        if mkdir(recordDirectory, 0o700) < 0 && errno != EEXIST { throw LinuxError(code: errno, call: "mkdir", subject: recordDirectory) }
        try Sysfs.write(recordDirectory + "/" + USBIPAttachRecord.fileName(port: port), record.fileText, create: 0o700)
    }

    /// Removes the attach record of `port` (absent is fine).
    package static func removeRecord(port: Int) {
        _ = unlink(recordDirectory + "/" + USBIPAttachRecord.fileName(port: port))
    }

    /// Hands the connected socket `fd` to vhci-hcd on `port` for the remote
    /// device `devid` (bus << 16 | device number there) at `speed`
    /// (`enum usb_device_speed`). The kernel takes its own reference: the
    /// caller closes its descriptor after.
    package static func attach(port: Int, socket fd: Int32, devid: UInt32, speed: UInt32) throws(LinuxError) {
        try writeControl("attach", "\(port) \(fd) \(devid) \(speed)")
    }

    /// Detaches whatever is on vhci port `port` (an ordinary removal).
    package static func detach(port: Int) throws(LinuxError) {
        try writeControl("detach", "\(port)")
    }

    private static func writeControl(_ file: String, _ text: String) throws(LinuxError) {
        try Sysfs.write(controlDirectory + "/" + file, text)
    }
}

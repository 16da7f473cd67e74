/// One port of the kernel's USB/IP importer, vhci-hcd, as a line of its
/// sysfs `status` file (`/sys/devices/platform/vhci_hcd.0/status`, and
/// `status.1`, ... for more controllers):
///
///     hub port sta spd dev      sockfd local_busid
///     hs  0000 004 000 00000000 000000 0-0
///     ss  0008 006 005 00040002 000003 3-1
///
/// The sockfd column (a socket pointer in older kernels) is not kept.
public struct VHCIPortStatus: Hashable, Sendable {
    /// Which root hub of the controller the port is on.
    public enum Hub: String, Hashable, Sendable {
        /// `hs`: the USB 2.0 hub, for every speed up to high speed.
        case highSpeed = "hs"
        /// `ss`: the USB 3 hub, for SuperSpeed devices.
        case superSpeed = "ss"

        /// The hub a device of `speed` (`enum usb_device_speed`) is attached
        /// on: SuperSpeed and SuperSpeed+ on `ss`, everything else on `hs`,
        /// as vhci-hcd places them. (vhci-hcd accepts SuperSpeed+ only since
        /// a 2024 change; older kernels, 6.1 among them, refuse such a
        /// device on any port.)
        public init(forSpeed speed: UInt32) {
            switch USBDeviceSpeed(rawValue: speed) {
            case .superSpeed, .superSpeedPlus: self = .superSpeed
            default: self = .highSpeed
            }
        }
    }

    /// The port's hub.
    public var hub: Hub
    /// The port number across all vhci controllers: what vhci-hcd's
    /// `attach` and `detach` files and `usbip detach -p` take.
    public var port: Int
    /// The port's state (`enum usbip_device_status`): 4 free
    /// (`VDEV_ST_NULL`), 5 not yet assigned, 6 in use, 7 in error.
    public var status: Int
    /// The attached device's speed (`enum usb_device_speed`); 0 when free.
    public var speed: UInt32
    /// The remote device's id, `bus << 16 | device` on the exporting host; 0 when free.
    public var deviceID: UInt32
    /// The attached device's name on this host (`3-1`: the sysfs name under
    /// the vhci bus); `0-0` when free.
    public var localBusID: String

    /// `VDEV_ST_NULL`: nothing attached, free to attach.
    public static let freeStatus = 4
    /// `VDEV_ST_USED`: a device is attached.
    public static let usedStatus = 6

    /// A port status from its fields.
    public init(hub: Hub, port: Int, status: Int, speed: UInt32, deviceID: UInt32, localBusID: String) {
        self.hub = hub
        self.port = port
        self.status = status
        self.speed = speed
        self.deviceID = deviceID
        self.localBusID = localBusID
    }

    /// Whether nothing is attached and the port is free to attach to.
    public var isFree: Bool { status == Self.freeStatus }
    /// Whether a device is attached.
    public var isInUse: Bool { status == Self.usedStatus }

    /// The ports a `status` file lists. The header and every line that is
    /// not a well-formed port line are skipped, so one bad line does not
    /// hide the others.
    public static func parse(_ text: String) -> [VHCIPortStatus] {
        text.split(whereSeparator: \.isNewline).compactMap(VHCIPortStatus.init(line:))
    }

    /// The first free port among `ports` for a device of `speed` (`enum
    /// usb_device_speed`, as an import reply gives it) on the hub
    /// ``Hub/init(forSpeed:)`` picks, as `usbip attach` chooses, leaving out
    /// the port numbers in `excluding` (ports another attach took between
    /// reading the status and attaching); nil when there is none.
    public static func freePort(in ports: [VHCIPortStatus], forSpeed speed: UInt32, excluding: Set<Int> = []) -> Int? {
        let hub = Hub(forSpeed: speed)
        return ports.first { $0.hub == hub && $0.isFree && !excluding.contains($0.port) }?.port
    }

    /// One port line: seven fields separated by spaces, `hs`/`ss`, then
    /// decimal port, state and speed, the hex device id, the ignored sockfd
    /// and the local bus id.
    private init?(line: Substring) {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count == 7, let hub = Hub(rawValue: String(fields[0])),
              let port = parseDecimal(fields[1]), let status = parseDecimal(fields[2]),
              let speed = parseDecimal(fields[3]),
              let deviceID = parseHex(fields[4], maxDigits: 8),
              fields[6].utf8.count <= 255, !fields[6].unicodeScalars.contains(where: isControlScalar)
        else { return nil }
        self.init(hub: hub, port: port, status: status, speed: UInt32(speed), deviceID: UInt32(deviceID),
                  localBusID: String(fields[6]))
    }
}

/// C0 and C1 control characters and DEL.
func isControlScalar(_ scalar: Unicode.Scalar) -> Bool {
    scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
}

/// 1 to 9 decimal digits and nothing else (no sign), so it fits any integer type here.
private func parseDecimal(_ text: Substring) -> Int? {
    guard (1...9).contains(text.utf8.count), text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
    return Int(text)
}

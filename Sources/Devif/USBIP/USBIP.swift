import DevifCore
import DevifLinux
import Glibc

/// USB/IP on this host, through the kernel's own USB/IP (`vhci-hcd`) and
/// interoperable with Debian's `usbip` tools: list what another host's
/// usbipd exports, attach its devices here and detach them.
///
/// An attached device arrives like a local one: ``DeviceManager`` reports
/// it, names it by its serial number (the same link as when plugged here) or,
/// without one, by the exporting host and its bus id there
/// (``/DevifCore/RemoteOrigin/location``), and opens it for I/O.
///
/// Unlike `usbip attach`, an attach by devif sets TCP keepalive and a user
/// timeout on the connection it hands the kernel: when the network goes, the
/// device is removed (and open handles end with `deviceRemoved`) within
/// about ``AttachOptions/removalTimeout`` instead of hanging until TCP gives
/// up many minutes later.
public enum USBIP {
    /// How long to wait for usbipd, and how soon a silent network ends an attach.
    public struct AttachOptions: Sendable, Hashable {
        /// The most time to connect and get usbipd's answer.
        public var connectTimeout: Duration
        /// After this long without an answer from the exporting host, the
        /// connection ends and the device is removed. The removal comes
        /// within about this (plus a second or two) after the network goes.
        public var removalTimeout: Duration

        /// The defaults: 5 s to connect, removal within about 8 s.
        public init(connectTimeout: Duration = .seconds(5), removalTimeout: Duration = .seconds(8)) {
            self.connectTimeout = connectTimeout
            self.removalTimeout = removalTimeout
        }
    }

    /// What `host`'s usbipd exports now.
    public static func exportedDevices(on host: String, port: String = RemoteOrigin.defaultPort,
                                       timeout: Duration = .seconds(5)) throws(USBIPError) -> [USBIPExportedDevice] {
        let what = "listing what \(host) exports"
        let deadline = ContinuousClock.now + timeout
        let connection = try connect(host, port, timeout, what)
        return try USBIPExchange.deviceList(connection, deadline: deadline, what: what)
    }

    /// Attaches `busID` exported by `host` to this host and returns where it
    /// came from, with the vhci port it is on. Writes the same attach record
    /// as `usbip attach`, so `usbip port` and `usbip detach` know it too.
    /// Needs root and vhci-hcd.
    @discardableResult
    public static func attach(_ busID: String, on host: String, port: String = RemoteOrigin.defaultPort,
                              options: AttachOptions = AttachOptions()) throws(USBIPError) -> RemoteOrigin {
        let what = "attaching \(busID) from \(host)"
        guard VHCI.isLoaded else {
            throw USBIPError(.moduleNotLoaded, "\(what): vhci-hcd is not loaded (load it: sudo modprobe vhci-hcd)")
        }
        let record = USBIPAttachRecord(host: host, port: port, busID: busID)
        guard record.isValid else {
            throw USBIPError(.system, "\(what): the host name, port or bus id cannot go in an attach record "
                + "(at most \(USBIPAttachRecord.maximumFieldLength) bytes each, no spaces or control characters)")
        }
        let deadline = ContinuousClock.now + options.connectTimeout
        let connection = try connect(host, port, options.connectTimeout, what)
        do { try connection.endWhenSilent(for: options.removalTimeout) } catch { throw .transport(error, what) }
        let device = try USBIPExchange.importDevice(busID, connection, deadline: deadline, what: what)
        // Another attach may take a port between our look and our write:
        // the kernel says EBUSY and the next free one is tried.
        var tried = Set<Int>()
        while true {
            guard let free = VHCIPortStatus.freePort(in: VHCI.ports(), forSpeed: device.speed, excluding: tried) else {
                throw USBIPError(.noFreePort, "\(what): no free vhci port for a device of speed \(device.speed) "
                    + "(\(tried.isEmpty ? "all in use" : "tried \(tried.sorted())"); detach one: devif-usb detach)")
            }
            tried.insert(free)
            do throws(LinuxError) {
                try VHCI.attach(port: free, socket: connection.fd, devid: device.deviceID, speed: device.speed)
            } catch where error.code == EBUSY && tried.count < 8 {
                continue
            } catch {
                throw .system(error, what + " on vhci port \(free)")
            }
            // The record after the attach, as the usbip tool writes it (the
            // USB source waits for it before naming the device).
            do throws(LinuxError) { try VHCI.writeRecord(record, port: free) } catch {
                try? VHCI.detach(port: free)
                throw .system(error, what + ": writing the attach record of vhci port \(free) (detached again)")
            }
            return RemoteOrigin(host: host, port: port, busID: busID, vhciPort: free)
        }
    }

    private static func connect(_ host: String, _ port: String, _ timeout: Duration,
                                _ what: String) throws(USBIPError) -> TCPConnection {
        do { return try TCPConnection(host: host, port: port, timeout: timeout) } catch { throw .transport(error, what) }
    }

    /// Every device attached to this host now (vhci ports in use), with its
    /// origin where an attach record names it.
    public static func attached() -> [(vhciPort: Int, origin: RemoteOrigin?)] {
        VHCI.ports().filter(\.isInUse).map { status in
            (status.port, VHCI.readRecord(port: status.port).map {
                RemoteOrigin(host: $0.host, port: $0.port, busID: $0.busID, vhciPort: status.port)
            })
        }
    }

    /// Detaches what is on vhci port `vhciPort`: an ordinary removal.
    public static func detach(vhciPort: Int) throws(USBIPError) {
        guard VHCI.isLoaded else { throw USBIPError(.notAttached, "vhci-hcd is not loaded: nothing is attached") }
        guard VHCI.ports().contains(where: { $0.port == vhciPort && $0.isInUse }) else {
            throw USBIPError(.notAttached, "nothing is attached on vhci port \(vhciPort) (devif-usb detach --list shows what is)")
        }
        do { try VHCI.detach(port: vhciPort) } catch { throw .system(error, "detaching vhci port \(vhciPort)") }
        VHCI.removeRecord(port: vhciPort)
    }

    /// Detaches the device `busID` from `host`, wherever it is attached.
    public static func detach(_ busID: String, from host: String, port: String = RemoteOrigin.defaultPort) throws(USBIPError) {
        guard let found = vhciPort(of: busID, from: host, port: port) else {
            throw USBIPError(.notAttached, "\(busID) from \(host) is not attached here (devif-usb detach --list shows what is)")
        }
        try detach(vhciPort: found)
    }

    /// The vhci port `busID` from `host` is attached on here, by its attach
    /// record; `port` nil matches any usbipd port.
    public static func vhciPort(of busID: String, from host: String, port: String? = nil) -> Int? {
        attached().first { a in
            a.origin.map { $0.host == host && $0.busID == busID && (port == nil || $0.port == port) } ?? false
        }?.vhciPort
    }

    /// Whether the local USB device `busID` (its sysfs name, which is its
    /// port chain: `1-1.2`) is exported: bound to usbip-host.
    public static func isExported(busID: String) -> Bool { USBIPHost.isExported(busID: busID) }

    /// Exports the local USB device `busID`: takes it from its drivers and
    /// binds it to usbip-host, as `usbip bind` does, so a running usbipd
    /// serves it. While exported, this host cannot open it. Needs root and
    /// usbip-host; ``unexport(busID:)`` gives it back.
    public static func export(busID: String) throws(USBIPError) {
        guard USBIPHost.isLoaded else {
            throw USBIPError(.moduleNotLoaded, "exporting \(busID): usbip-host is not loaded (load it: sudo modprobe usbip-host)")
        }
        guard PortChain(parsing: busID).map({ !$0.ports.isEmpty }) == true else {
            throw USBIPError(.system, "exporting \(busID): not a USB device's bus id (a port chain like 1-1.2; a root hub cannot be exported)")
        }
        do { try USBIPHost.bind(busID: busID) } catch { throw .system(error, "exporting \(busID)") }
    }

    /// Gives the exported device `busID` back to its usual drivers, as
    /// `usbip unbind` does; whoever had it attached sees it removed.
    public static func unexport(busID: String) throws(USBIPError) {
        do { try USBIPHost.unbind(busID: busID) } catch { throw .system(error, "giving \(busID) back to its drivers") }
    }
}

extension USBIP {
    /// Keeps attached, as they appear, the devices `hosts` export that have
    /// an instance in class `classGUID` (as far as ids and class codes tell):
    /// asks each host's usbipd every `interval` (usbipd tells no one of
    /// changes) and attaches what is new. Runs until its task is cancelled.
    /// Each failure is told to `notice` once; a device that failed is tried
    /// again after 30 s. Needs root and vhci-hcd, like ``attach(_:on:port:options:)``.
    public static func keepAttached(classGUID: GUID, from hosts: [String], port: String = RemoteOrigin.defaultPort,
                                    catalog: ClassCatalog, options: AttachOptions = AttachOptions(),
                                    interval: Duration = .seconds(2), notice: @Sendable (String) -> Void) async {
        var failedAt: [String: ContinuousClock.Instant] = [:]
        var unreachable = Set<String>()
        while !Task.isCancelled {
            let here = Set(attached().compactMap { $0.origin.map { "\($0.host) \($0.port) \($0.busID)" } })
            for host in hosts {
                let devices: [USBIPExportedDevice]
                do {
                    devices = try exportedDevices(on: host, port: port, timeout: options.connectTimeout)
                    unreachable.remove(host)
                } catch {
                    if unreachable.insert(host).inserted { notice("\(error) (asking again every \(interval))") }
                    continue
                }
                for d in devices where RemoteListing.classes(of: d, host: host, port: port, catalog: catalog).contains(classGUID) {
                    let key = "\(host) \(port) \(d.busID)"
                    guard !here.contains(key) else { continue }
                    if let at = failedAt[key], ContinuousClock.now < at + .seconds(30) { continue }
                    do {
                        try attach(d.busID, on: host, port: port, options: options)
                        failedAt[key] = nil
                    } catch {
                        failedAt[key] = .now
                        notice("\(error)")
                    }
                }
            }
            try? await Task.sleep(for: interval)
        }
    }
}

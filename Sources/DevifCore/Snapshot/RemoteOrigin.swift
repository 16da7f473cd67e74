/// Where an imported USB/IP device really is: the exporting host and the
/// device's bus id there. A device on a `vhci_hcd` bus has a port chain that
/// only tells the order of attaching; this is its place instead.
///
/// The host is the text the attach was given (a name or an address, as
/// `usbip attach -r` and `devif-usb attach` record it): attach by the same
/// name each time for the same links. Every field is untrusted text.
public struct RemoteOrigin: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The exporting host as the attach named it.
    public var host: String
    /// usbipd's TCP port on that host ("3240" unless the attach said otherwise).
    public var port: String
    /// The device's bus id on the exporting host (`1-1.2`, `usbip-vudc.0`).
    public var busID: String
    /// The local `vhci_hcd` port it is attached on (usbip's port number, what
    /// `usbip detach -p` takes); nil when not known.
    public var vhciPort: Int?

    /// usbipd's port when an attach names none.
    public static let defaultPort = "3240"

    /// An origin from an attach record's fields.
    public init(host: String, port: String = RemoteOrigin.defaultPort, busID: String, vhciPort: Int? = nil) {
        self.host = host
        self.port = port
        self.busID = busID
        self.vhciPort = vhciPort
    }

    /// The location an imported device's instances are named by when they
    /// have no serial: `usbip:HOST/BUSID` (`usbip:HOST:PORT/BUSID` on another
    /// port, `[...]` around an IPv6 address). It does not depend on the vhci
    /// port, so a link survives detach and re-attach in any order.
    public var location: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "usbip:" + host + (port == Self.defaultPort ? "" : ":" + port) + "/" + busID
    }

    /// `usbip://HOST:PORT/BUSID`, as `usbip port` shows an attached device.
    public var description: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "usbip://\(host):\(port)/\(busID)"
    }
}

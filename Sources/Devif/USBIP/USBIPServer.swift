import DevifCore
import DevifLinux

/// A USB/IP server for the devices this host exports: what usbipd does for
/// devices bound to usbip-host (device list and import, the same protocol,
/// so `usbip attach` and ``USBIP/attach(_:on:port:options:)`` both work with
/// it), and one thing usbipd does not: TCP keepalive and a user timeout on
/// each connection it hands the kernel. usbipd never notices an importer
/// lost with the network and keeps its device busy; this server's kernel
/// side ends the connection within about `removalTimeout`, and the device
/// can be attached again once the network is back.
///
/// It serves only the bus ids `serves` returns that are bound to
/// usbip-host (``USBIP/export(busID:)``). Needs root.
public final class USBIPServer: Sendable {
    private let listener: TCPListener
    private let removalTimeout: Duration
    private let serves: @Sendable () -> [String]

    /// Listens on `address` (nil: every address) and `port`.
    public init(address: String? = nil, port: String = RemoteOrigin.defaultPort, removalTimeout: Duration = .seconds(8),
                serves: @escaping @Sendable () -> [String]) throws(USBIPError) {
        do { listener = try TCPListener(address: address, port: port) } catch {
            throw .transport(error, "listening for USB/IP on \(address ?? "*"):\(port)")
        }
        self.removalTimeout = removalTimeout
        self.serves = serves
    }

    /// `address:port` it listens on.
    public var name: String { listener.name }

    /// Answers clients, one request per connection as usbipd does, until
    /// ``stop()``. `notice` hears each import and each refusal.
    public func run(notice: (String) -> Void) {
        while true {
            let connection: TCPConnection?
            do { connection = try listener.accept() } catch {
                notice("\(error)")
                return
            }
            guard let connection else { return }
            serve(connection, notice: notice)
        }
    }

    /// Ends ``run(notice:)``. Safe from any thread; devices attached stay so.
    public func stop() { listener.stop() }

    private func serve(_ connection: borrowing TCPConnection, notice: (String) -> Void) {
        // A client gets 5 s to say what it wants: a silent one holds no one up for long.
        let deadline = ContinuousClock.now + .seconds(5)
        do throws(USBIPTransportError) {
            let header = try connection.receive(exactly: 8, deadline: deadline)
            let operation: USBIPWire.Operation
            switch Result(catching: { () throws(USBIPWireError) in try USBIPWire.requestOperation(header) }) {
            case .success(let o): operation = o
            case .failure(let e):
                notice("\(connection.peer): not a USB/IP request: \(e)")
                return
            }
            let served = Set(serves()).filter(USBIPHost.isExported)
            switch operation {
            case .requestImport:
                let busID = USBIPWire.requestedBusID(try connection.receive(exactly: USBIPWire.requestedBusIDSize, deadline: deadline))
                guard served.contains(busID), let device = USBIPHost.describe(busID: busID) else {
                    notice("\(connection.peer) asked for \(busID.debugDescription), which is not exported here")
                    try connection.send(USBIPWire.importReply(status: .noDevice, device: nil), deadline: deadline)
                    return
                }
                guard USBIPHost.isAvailable(busID: busID) else {
                    notice("\(connection.peer) asked for \(busID), which another host has attached")
                    try connection.send(USBIPWire.importReply(status: .deviceBusy, device: nil), deadline: deadline)
                    return
                }
                try connection.endWhenSilent(for: removalTimeout)
                do throws(LinuxError) { try USBIPHost.handOver(busID: busID, socket: connection.fd) } catch {
                    notice("handing \(busID) to usbip-host for \(connection.peer): \(error)")
                    try connection.send(USBIPWire.importReply(status: .error, device: nil), deadline: deadline)
                    return
                }
                try connection.send(USBIPWire.importReply(status: .ok, device: device), deadline: deadline)
                notice("\(busID) attached by \(connection.peer)")
            default:
                let devices = served.sorted().compactMap(USBIPHost.describe)
                try connection.send(USBIPWire.deviceListReply(devices), deadline: deadline)
            }
        } catch {
            notice("\(connection.peer): \(error)")
        }
    }
}

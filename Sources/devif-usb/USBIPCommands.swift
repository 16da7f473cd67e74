import ArgumentParser
import Devif
import Dispatch
import FoundationEssentials
import Glibc

/// What `attach` and `list --remote` share: where usbipd listens and how long to wait for it.
struct RemoteOptions: ParsableArguments {
    @Option(name: .customLong("port"), help: ArgumentHelp("usbipd's TCP port on the remote host.", valueName: "port"))
    var port: String = RemoteOrigin.defaultPort

    @Option(name: .customLong("connect-timeout"),
            help: ArgumentHelp("Seconds to wait for the remote host to answer.", valueName: "seconds"))
    var connectTimeout: Double = 5

    func validate() throws {
        guard let n = UInt16(port), n > 0 else { throw ValidationError("--port \(port.debugDescription): a TCP port is 1...65535") }
        guard connectTimeout > 0, connectTimeout <= 600 else { throw ValidationError("--connect-timeout takes 0 < seconds <= 600") }
    }
}

struct AttachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Attach devices another host exports over USB/IP; they arrive here like local ones.",
        discussion: """
            Connects to usbipd on HOST, asks for each named device and hands the connection to the \
            kernel's vhci-hcd, as `usbip attach` does, writing the same records (so `usbip port` and \
            `usbip detach` know them). Name devices by their bus id on HOST (`devif-usb list --remote \
            HOST` shows them) or take every exported device of a class with --class.

            Unlike `usbip attach`, the connection gets TCP keepalive and a user timeout: when the \
            network goes, the device is removed (open handles end with deviceRemoved) within about \
            --removal-timeout seconds instead of hanging until TCP gives up many minutes later.

            A device with a serial number gets the same symbolic link as when plugged here; one \
            without gets a location made of HOST and its bus id there, the same at every attach. \
            Attach by the same host name each time. Needs root and vhci-hcd (modprobe vhci-hcd). \
            USB/IP has no authentication or encryption: see README, "Devices on other hosts".
            """)

    @Argument(help: ArgumentHelp("The exporting host: a name or an address.", valueName: "host"))
    var host: String

    @Argument(help: ArgumentHelp("Bus ids on HOST to attach.", valueName: "busid"))
    var busIDs: [String] = []

    @Option(name: .customLong("class"), help: ArgumentHelp("Attach every exported device with an instance in this class (GUID or name).", valueName: "class"))
    var classArgument: ClassArgument?

    @Option(name: .customLong("removal-timeout"),
            help: ArgumentHelp("Seconds without an answer from HOST after which the device is removed.", valueName: "seconds"))
    var removalTimeout: Double = 8

    @Flag(name: .customLong("json"), help: "Print one JSON object per attached device.")
    var json = false

    @OptionGroup var remote: RemoteOptions
    @OptionGroup var common: CommonOptions

    func validate() throws {
        if busIDs.isEmpty == (classArgument == nil) {
            throw ValidationError(busIDs.isEmpty
                ? "name the devices to attach: bus ids (devif-usb list --remote \(host) shows them) or --class CLASS"
                : "give bus ids or --class, not both")
        }
        guard removalTimeout >= 2, removalTimeout <= 3600 else { throw ValidationError("--removal-timeout takes 2...3600 seconds") }
    }

    func run() async throws {
        var chosen = busIDs
        if let classArgument {
            let catalog = DeviceManager.loadCatalog(folders: common.classFolders.isEmpty ? nil : common.classFolders).catalog
            guard let guid = try resolveClass(classArgument, in: catalog) else { return }
            let exported = try listExported(host, remote)
            chosen = exported.filter { RemoteListing.classes(of: $0, host: host, port: remote.port, catalog: catalog).contains(guid) }.map(\.busID)
            if chosen.isEmpty {
                throw fail("\(host) exports nothing in class \(classArgument.text) (\(exported.count) exported; devif-usb list --remote \(host) shows them)", Exit.unavailable)
            }
        }
        let options = USBIP.AttachOptions(connectTimeout: .seconds(remote.connectTimeout),
                                          removalTimeout: .seconds(removalTimeout))
        var failed: ExitCode?
        for busID in chosen {
            do {
                let origin = try USBIP.attach(busID, on: host, port: remote.port, options: options)
                if json {
                    print(JSONValue.object([("host", .string(origin.host)), ("port", .string(origin.port)),
                                            ("busId", .string(origin.busID)), ("vhciPort", JSONValue(origin.vhciPort))]).serialized())
                } else {
                    print("attached \(printable(origin.description)) on vhci port \(origin.vhciPort.map(String.init) ?? "?")")
                }
            } catch {
                failed = fail("\(error)", usbipExit(error))
            }
        }
        if let failed { throw failed }
    }
}

struct DetachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detach",
        abstract: "Detach devices attached over USB/IP (by devif or by `usbip attach`).",
        discussion: """
            Name what to detach by HOST/BUSID (as `attach` printed it) or by vhci port number, \
            or detach everything with --all. --list shows what is attached. A detach is an \
            ordinary removal. Needs root.
            """)

    @Argument(help: ArgumentHelp("HOST/BUSID or a vhci port number.", valueName: "device"))
    var devices: [String] = []

    @Flag(name: .customLong("all"), help: "Detach every attached device.")
    var all = false

    @Flag(name: .customLong("list"), help: "Show what is attached (vhci port, origin) and detach nothing.")
    var list = false

    @OptionGroup var common: CommonOptions

    func validate() throws {
        let modes = [!devices.isEmpty, all, list].filter { $0 }.count
        if modes != 1 { throw ValidationError("give HOST/BUSID or vhci port numbers, or --all, or --list (one of them)") }
    }

    func run() async throws {
        let attached = USBIP.attached()
        if list {
            if attached.isEmpty { print("Nothing is attached.") }
            for a in attached { print("vhci port \(a.vhciPort)  \(a.origin.map { printable($0.description) } ?? "(no attach record)")") }
            return
        }
        var ports: [Int] = []
        if all {
            ports = attached.map(\.vhciPort)
            if ports.isEmpty { print("Nothing is attached.") }
        }
        for d in devices {
            if let n = Int(d) { ports.append(n); continue }
            guard let slash = d.lastIndex(of: "/") else {
                throw fail("\(d.debugDescription): give HOST/BUSID or a vhci port number (devif-usb detach --list)", Exit.usage)
            }
            guard let port = USBIP.vhciPort(of: String(d[d.index(after: slash)...]), from: String(d[..<slash]), port: nil) else {
                throw fail("\(d) is not attached here (devif-usb detach --list shows what is)", Exit.unavailable)
            }
            ports.append(port)
        }
        var failed: ExitCode?
        for port in ports {
            do {
                try USBIP.detach(vhciPort: port)
                print("detached vhci port \(port)")
            } catch {
                failed = fail("\(error)", usbipExit(error))
            }
        }
        if let failed { throw failed }
    }
}

func usbipExit(_ error: USBIPError) -> ExitCode {
    switch error.code {
    case .permissionDenied: Exit.noPermission
    case .protocolViolation: Exit.dataError
    default: Exit.unavailable
    }
}

func listExported(_ host: String, _ remote: RemoteOptions) throws -> [USBIPExportedDevice] {
    do {
        return try USBIP.exportedDevices(on: host, port: remote.port, timeout: .seconds(remote.connectTimeout))
    } catch {
        throw fail("\(error)", usbipExit(error))
    }
}

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export local USB devices over USB/IP, for a running usbipd to serve; give them back on exit.",
        discussion: """
            Binds the USB device of each named instance (LINK, or every present instance of \
            --class) to usbip-host, as `usbip bind` does, and waits: SIGINT or SIGTERM give the \
            devices back to their drivers (exit 0). With --keep it exits at once and leaves them \
            exported; `devif-usb unexport` gives them back. Another host then attaches them \
            with `devif-usb attach` (or `usbip attach`) from this host's usbipd (`usbipd -D`).

            With --serve it is the USB/IP server for them itself, in place of usbipd (same \
            protocol, TCP port 3240 unless --port), on --listen ADDRESS only if given, and it \
            sets keepalive on each connection: when the network to an importer goes, the \
            device is freed within about --removal-timeout seconds and can be attached again \
            once the network is back (usbipd keeps it busy until restarted).

            Only what is named is exported: a HID instance names its whole USB device. A device \
            with a keyboard or a mouse is exported only when named by link, never by --class: \
            whoever attaches it reads every keystroke. While exported, this host cannot open it \
            (open says so). Needs root and usbip-host (modprobe usbip-host). USB/IP has no \
            authentication or encryption: see README, "Devices on other hosts".
            """)

    @Argument(help: ArgumentHelp("Symbolic links of the instances whose devices to export.", valueName: "link"))
    var links: [String] = []

    @Option(name: .customLong("class"), help: ArgumentHelp("Export the devices of every present instance of this class (GUID or name).", valueName: "class"))
    var classArgument: ClassArgument?

    @Flag(name: .customLong("keep"), help: "Leave the devices exported and exit (devif-usb unexport gives them back).")
    var keep = false

    @Flag(name: .customLong("serve"), help: "Serve them over USB/IP here, in place of usbipd, with keepalive.")
    var serve = false

    @Option(name: .customLong("listen"), help: ArgumentHelp("With --serve: listen on this address only (default: every address).", valueName: "address"))
    var listen: String?

    @Option(name: .customLong("port"), help: ArgumentHelp("With --serve: the TCP port.", valueName: "port"))
    var port: String = RemoteOrigin.defaultPort

    @Option(name: .customLong("removal-timeout"),
            help: ArgumentHelp("With --serve: seconds without an answer from an importer after which its device is freed.", valueName: "seconds"))
    var removalTimeout: Double = 8

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if links.isEmpty == (classArgument == nil) {
            throw ValidationError(links.isEmpty ? "name what to export: symbolic links (devif-usb list) or --class CLASS"
                                                : "give links or --class, not both")
        }
        if keep && serve { throw ValidationError("--keep exits at once; --serve serves until stopped: choose one") }
        if !serve && (listen != nil || port != RemoteOrigin.defaultPort) { throw ValidationError("--listen and --port go with --serve") }
        guard let n = UInt16(port), n > 0 else { throw ValidationError("--port \(port.debugDescription): a TCP port is 1...65535") }
        guard removalTimeout >= 2, removalTimeout <= 3600 else { throw ValidationError("--removal-timeout takes 2...3600 seconds") }
    }

    func run() async throws {
        let (manager, filter) = try await startedManager(common, classArgument: classArgument, followChanges: false)
        let present = manager.interfaces(.all)
        manager.stop()
        var chosen: [(busID: String, why: String)] = []
        func add(_ i: DeviceInterface) throws {
            guard i.remote == nil else {
                throw fail("\(i.symbolicLink) is imported over USB/IP itself: export it from the host it is plugged into", Exit.usage)
            }
            guard let chain = i.snapshot?.portChain, !chain.ports.isEmpty else {
                throw fail("\(i.symbolicLink) is not on USB (or is a root hub): only USB devices can be exported", Exit.usage)
            }
            if !chosen.contains(where: { $0.busID == "\(chain)" }) { chosen.append(("\(chain)", i.symbolicLink.rawValue)) }
        }
        if classArgument != nil {
            // Devices with a keyboard or a mouse only by name.
            let input = Set(present.filter { [WellKnownClass.keyboard.guid, WellKnownClass.mouse.guid].contains($0.classGuid) }
                .compactMap { $0.snapshot?.portChain })
            for i in present where i.classGuid == filter.classGuid {
                if let chain = i.snapshot?.portChain, input.contains(chain) {
                    common.notice("\(i.symbolicLink): not exported: its device has a keyboard or a mouse (name it by link to export it)")
                    continue
                }
                try add(i)
            }
            if chosen.isEmpty { throw fail("no present instance of class \(classArgument!.text) can be exported", Exit.unavailable) }
        }
        for link in links {
            guard let i = present.first(where: { $0.symbolicLink.rawValue == link }) else {
                throw fail("\(link): no present instance has this link (devif-usb list)", Exit.dataError)
            }
            try add(i)
        }
        var exported: [String] = []
        var failed: ExitCode?
        for c in chosen {
            do {
                try USBIP.export(busID: c.busID)
                exported.append(c.busID)
                // Unbuffered: a pipe reader learns it now, not at exit.
                writeOutput("exported \(c.busID) (\(printable(c.why)))\n")
            } catch {
                failed = fail("\(error)", usbipExit(error))
            }
        }
        if !keep && !exported.isEmpty {
            let signals = StopSignals()
            var server: USBIPServer?
            if serve {
                do {
                    let served = exported
                    server = try USBIPServer(address: listen, port: port, removalTimeout: .seconds(removalTimeout),
                                             serves: { served })
                } catch {
                    for busID in exported { try? USBIP.unexport(busID: busID) }
                    throw fail("\(error)", usbipExit(error))
                }
            }
            let running = server.map { s in
                // A thread of its own: `run` blocks until `stop`.
                DispatchQueue(label: "usbip-server").async { [common] in s.run(notice: { common.notice($0) }) }
                return s
            }
            common.notice("exported\(running.map { "; serving USB/IP on \($0.name)" } ?? ""); Ctrl-C gives \(exported.count == 1 ? "it" : "them") back")
            await signals.wait()
            running?.stop()
            for busID in exported {
                do { try USBIP.unexport(busID: busID); writeOutput("gave back \(busID)\n") } catch { failed = fail("\(error)", usbipExit(error)) }
            }
        }
        if let failed { throw failed }
    }
}

struct UnexportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unexport",
        abstract: "Give exported USB devices back to their drivers.",
        discussion: "Name them by bus id (as `export` printed it), or give back every device bound to usbip-host with --all. Needs root.")

    @Argument(help: ArgumentHelp("Bus ids of exported devices (1-1.2).", valueName: "busid"))
    var busIDs: [String] = []

    @Flag(name: .customLong("all"), help: "Give back every exported device.")
    var all = false

    func validate() throws {
        if busIDs.isEmpty == !all { throw ValidationError("give bus ids or --all (one of them)") }
    }

    func run() throws {
        var targets = busIDs
        if all {
            targets = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/bus/usb/devices")) ?? [])
                .filter { !$0.contains(":") && USBIP.isExported(busID: $0) }.sorted()
            if targets.isEmpty { print("Nothing is exported.") }
        }
        var failed: ExitCode?
        for busID in targets {
            do { try USBIP.unexport(busID: busID); print("gave back \(busID)") } catch { failed = fail("\(error)", usbipExit(error)) }
        }
        if let failed { throw failed }
    }
}

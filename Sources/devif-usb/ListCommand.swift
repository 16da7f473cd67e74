import ArgumentParser
import Devif
import FoundationEssentials
import Glibc

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the present instances (of one class, or all).",
        discussion: """
            With --all, also the instances seen before that are not present now (from the registry). \
            With --tree, devices with their interfaces and HID nodes beneath them, each node with \
            its classes and their symbolic links.

            With --remote HOST (repeatable), what each host's usbipd exports over USB/IP instead: \
            bus id, ids, speed, class codes and the classes of the catalog that ids and class codes \
            alone can match (usbipd sends no strings, so no serial numbers); attach them with \
            `devif-usb attach HOST BUSID`.
            """)

    @Option(name: .customLong("class"), help: ArgumentHelp("A class GUID or name (see `devif-usb classes`).", valueName: "class"))
    var classArgument: ClassArgument?

    @Flag(name: .customLong("all"), help: "Include absent instances remembered in the registry.")
    var all = false

    @Flag(name: .customLong("json"), help: "Print one JSON array of instance objects.")
    var json = false

    @Flag(name: .customLong("tree"), help: "Show devices with their interfaces and HID nodes beneath them.")
    var tree = false

    @Option(name: .customLong("remote"), help: ArgumentHelp("List what this host exports over USB/IP (repeatable).", valueName: "host"))
    var remoteHosts: [String] = []

    @OptionGroup var remote: RemoteOptions
    @OptionGroup var common: CommonOptions

    func validate() throws {
        if json && tree { throw ValidationError("--json and --tree cannot be combined: the JSON array is flat; group it by portChain") }
        if !remoteHosts.isEmpty && (all || tree) { throw ValidationError("--remote lists exported devices: it takes neither --all nor --tree") }
    }

    func run() async throws {
        if !remoteHosts.isEmpty { return try listRemote() }
        let (manager, filter) = try await startedManager(common, classArgument: classArgument, followChanges: false)
        defer { manager.stop() }
        let items = all ? manager.allInterfaces(filter) : manager.interfaces(filter)
        if json {
            print(JSONValue.array(items.map(\.json)).serialized())
        } else if items.isEmpty {
            print(all ? "No instances seen yet." : "No instances present.")
        } else if tree {
            for line in TreeView(color: common.useColor).render(items) { print(line) }
        } else {
            printTable(items, color: common.useColor)
        }
    }
}

/// Aligned columns; the symbolic link last since it is long. Device strings
/// are shown with control characters escaped.
func printTable(_ items: [DeviceInterface], color: Bool) {
    let header = ["STATE", "KIND", "VID:PID", "MI", "SERIAL", "CLASS", "ACCESS", "SYMBOLIC LINK"]
    let rows: [[String]] = items.map { (i: DeviceInterface) -> [String] in
        let number: String = i.interfaceNumber.map { hex2(UInt8(truncatingIfNeeded: $0)) } ?? "-"
        return [i.present ? "present" : "absent", i.kind.rawValue, hex4(i.vendorId) + ":" + hex4(i.productId),
         number,
         i.serialNumber.map { printable($0, limit: 24) } ?? "-",
         i.className ?? i.classGuid.description,
         i.access?.rawValue ?? "-",
         i.symbolicLink.rawValue]
    }
    var widths = header.map(\.count)
    for row in rows { for (n, cell) in row.enumerated() { widths[n] = max(widths[n], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { n, c in n == cells.count - 1 ? c : c.padded(to: widths[n]) }
            .joined(separator: "  ")
    }
    print(color ? "\u{1B}[1m" + line(header) + "\u{1B}[0m" : line(header))
    for (row, item) in zip(rows, items) {
        let text = line(row)
        if !color { print(text) }
        else if !item.present { print("\u{1B}[2m" + text + "\u{1B}[0m") }
        else if item.access == .denied { print("\u{1B}[33m" + text + "\u{1B}[0m") }
        else { print(text) }
    }
}

/// A device string made safe for a terminal: control characters as \u{..}, shortened.
func printable(_ s: String, limit: Int = 64) -> String {
    var out = ""
    for scalar in s.unicodeScalars {
        if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar == "\u{FFFD}" {
            out += "\\u{" + String(scalar.value, radix: 16) + "}"
        } else {
            out.unicodeScalars.append(scalar)
        }
        if out.count >= limit { return out + "…" }
    }
    return out
}

extension ListCommand {
    /// `list --remote`: each host's exported devices, classified by the catalog.
    func listRemote() throws {
        let catalog = DeviceManager.loadCatalog(folders: common.classFolders.isEmpty ? nil : common.classFolders).catalog
        let filter = try resolveClass(classArgument, in: catalog)
        var rows: [(host: String, device: USBIPExportedDevice, classes: [InterfaceClass])] = []
        var failed: ExitCode?
        for host in remoteHosts {
            let devices: [USBIPExportedDevice]
            do { devices = try listExported(host, remote) } catch let code as ExitCode { failed = code; continue }
            for d in devices {
                let guids = RemoteListing.classes(of: d, host: host, port: remote.port, catalog: catalog)
                if let filter, !guids.contains(filter) { continue }
                rows.append((host, d, guids.map { catalog.interfaceClass(for: $0) }.sorted { $0.name < $1.name }))
            }
        }
        if json {
            print(JSONValue.array(rows.map { r in
                .object([("host", .string(r.host)), ("port", .string(remote.port)), ("busId", .string(r.device.busID)),
                         ("vendorId", .string(hex4(r.device.vendorID))), ("productId", .string(hex4(r.device.productID))),
                         ("speed", .string(r.device.knownSpeed.map { "\($0)" } ?? String(r.device.speed))),
                         ("deviceClass", .string(ClassTriple(r.device.deviceClass, r.device.deviceSubClass, r.device.deviceProtocol).description)),
                         ("interfaceClasses", .array(r.device.interfaces.map {
                             .string(ClassTriple($0.interfaceClass, $0.interfaceSubClass, $0.interfaceProtocol).description) })),
                         ("classes", .array(r.classes.map { .string($0.name) }))])
            }).serialized())
        } else if rows.isEmpty {
            print(failed == nil ? "No exported devices." : "No exported devices from the hosts that answered.")
        } else {
            let header = ["HOST", "BUSID", "VID:PID", "SPEED", "CLASS", "INTERFACES", "CLASSES"]
            let cells = rows.map { r in
                [printable(r.host), printable(r.device.busID), hex4(r.device.vendorID) + ":" + hex4(r.device.productID),
                 r.device.knownSpeed.map { "\($0)" } ?? String(r.device.speed),
                 ClassTriple(r.device.deviceClass, r.device.deviceSubClass, r.device.deviceProtocol).description,
                 r.device.interfaces.map { ClassTriple($0.interfaceClass, $0.interfaceSubClass, $0.interfaceProtocol).description }
                    .joined(separator: ","),
                 r.classes.map(\.name).joined(separator: ",")]
            }
            var widths = header.map(\.count)
            for row in cells { for (n, c) in row.enumerated() { widths[n] = max(widths[n], c.count) } }
            for row in [header] + cells {
                print(row.enumerated().map { n, c in n == row.count - 1 ? c : c.padded(to: widths[n]) }
                    .joined(separator: "  "))
            }
        }
        if let failed { throw failed }
    }
}

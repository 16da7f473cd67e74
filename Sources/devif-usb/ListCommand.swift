import ArgumentParser
import Devif
import Foundation

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the present instances (of one class, or all).",
        discussion: """
            With --all, also the instances seen before that are not present now (from the registry). \
            With --tree, devices with their interfaces and HID nodes beneath them, each node with \
            its classes and their symbolic links.
            """)

    @Option(name: .customLong("class"), help: ArgumentHelp("A class GUID or name (see `devif-usb classes`).", valueName: "class"))
    var classArgument: ClassArgument?

    @Flag(name: .customLong("all"), help: "Include absent instances remembered in the registry.")
    var all = false

    @Flag(name: .customLong("json"), help: "Print one JSON array of instance objects.")
    var json = false

    @Flag(name: .customLong("tree"), help: "Show devices with their interfaces and HID nodes beneath them.")
    var tree = false

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if json && tree { throw ValidationError("--json and --tree cannot be combined: the JSON array is flat; group it by portChain") }
    }

    func run() async throws {
        let (manager, filter) = try await startedManager(common, classArgument: classArgument)
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
    let rows: [[String]] = items.map { i in
        [i.present ? "present" : "absent", i.kind.rawValue, hex4(i.vendorId) + ":" + hex4(i.productId),
         i.interfaceNumber.map { String(format: "%02x", $0) } ?? "-",
         i.serialNumber.map { printable($0, limit: 24) } ?? "-",
         i.className ?? i.classGuid.description,
         i.access?.rawValue ?? "-",
         i.symbolicLink]
    }
    var widths = header.map(\.count)
    for row in rows { for (n, cell) in row.enumerated() { widths[n] = max(widths[n], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { n, c in n == cells.count - 1 ? c : c.padding(toLength: widths[n], withPad: " ", startingAt: 0) }
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

import ArgumentParser
import Devif
import FoundationEssentials
import Glibc

struct InfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show one instance: its descriptors, classes, node and access.",
        discussion: "LINK is a symbolic link as `list` prints it. An unknown link exits with status 65.")

    @Argument(help: ArgumentHelp("The instance's symbolic link.", valueName: "link"))
    var link: String

    @Flag(name: .customLong("json"), help: "Print one JSON object.")
    var json = false

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let (manager, _) = try await startedManager(common, followChanges: false)
        defer { manager.stop() }
        guard let info = manager.interface(link: link) else {
            if case .failure(let e) = Result(catching: { () throws(SymbolicLinkParseError) in try SymbolicLink(parsing: link) }) {
                throw fail("unknown symbolic link \(printable(link).debugDescription): it is not well-formed (\(e.reason)); `devif-usb list --all` prints the known ones", Exit.dataError)
            }
            throw fail("unknown symbolic link \(printable(link).debugDescription): no such instance is present or remembered; `devif-usb list --all` prints the known ones", Exit.dataError)
        }
        let siblings = manager.allInterfaces(.all).filter { $0.identityKey == info.identityKey }
        if json {
            guard case .object(var fields) = info.json else { return }
            fields.append(("classes", .array(siblings.map { s in
                .object([("classGuid", .string(s.classGuid.description)), ("className", JSONValue(s.className)),
                         ("symbolicLink", .string(s.symbolicLink.rawValue))])
            })))
            fields.append(("accessDetail", JSONValue(info.snapshot.flatMap(accessDetail))))
            let declared: [JSONValue] = (info.snapshot?.firmwareGUIDs ?? []).map { g in
                let number: Int? = g.interfaceNumber.map { Int($0) }
                return .object([("guid", .string(g.guid.description)), ("source", .string(g.source.rawValue)),
                                ("interfaceNumber", JSONValue(number))])
            }
            fields.append(("firmwareGUIDs", .array(declared)))
            fields.append(("bcdDevice", JSONValue(info.snapshot?.bcdDevice.map(hex4))))
            fields.append(("configurations", .array((info.snapshot?.configurations ?? []).map(configurationJSON))))
            if let hid = info.snapshot?.hid {
                fields.append(("hid", .object([
                    ("usages", .array(hid.usages.map { .string($0.description) })),
                    ("busType", .string(hid.busType.description)),
                    ("reportDescriptorLength", .int(Int64(hid.reportDescriptor.count))),
                ])))
            }
            print(JSONValue.object(fields).serialized())
            return
        }
        var lines: [(String, String)] = [
            ("Symbolic link", info.symbolicLink.rawValue),
            ("State", info.present ? "present" : "absent (remembered from an earlier plug)"),
            ("Kind", info.kind.rawValue),
            ("VID:PID", hex4(info.vendorId) + ":" + hex4(info.productId)),
        ]
        if let b = info.snapshot?.bcdDevice { lines.append(("bcdDevice", hex4(b))) }
        lines.append(("Manufacturer", info.manufacturer.map { printable($0) } ?? "-"))
        lines.append(("Product", info.product.map { printable($0) } ?? "-"))
        lines.append(("Serial number", info.serialNumber.map { printable($0) } ?? "(none)"))
        if let n = info.interfaceNumber { lines.append(("Interface", String(n))) }
        lines.append(("Port chain", info.portChain?.description ?? "-"))
        if let busID = info.exportedBusID {
            lines.append(("USB/IP", "exported by this host (bound to usbip-host; `devif-usb unexport \(busID)` gives it back)"))
        }
        if let r = info.remote {
            lines.append(("Remote", printable(r.description) + (r.vhciPort.map { " (USB/IP, vhci port \($0))" } ?? " (USB/IP)")))
        }
        lines.append(("Device node", info.devnode ?? "-"))
        lines.append(("Access", info.snapshot.flatMap(accessDetail) ?? info.access?.rawValue ?? "-"))
        for s in siblings {
            lines.append(("Class", "\(s.classGuid) \(s.className ?? "")"))
        }
        for g in info.snapshot?.firmwareGUIDs ?? [] {
            lines.append(("Firmware GUID", firmwareGUIDText(g)))
        }
        if let hid = info.snapshot?.hid {
            lines.append(("HID bus", hid.busType.description))
            lines.append(("HID usages", hid.usages.map(\.description).joined(separator: ", ")))
            lines.append(("Report descriptor", "\(hid.reportDescriptor.count) bytes"))
        }
        let w = lines.map(\.0.count).max() ?? 0
        for (k, v) in lines { print(k.padded(to: w) + "  " + v) }
        for c in info.snapshot?.configurations ?? [] {
            let active = info.snapshot?.activeConfigurationValue == c.value ? " (active)" : ""
            print("Configuration \(c.value)\(active)")
            for i in c.interfaces {
                print("  Interface \(i.number) alt \(i.alternateSetting): class \(i.interfaceClass)"
                      + (i.interfaceString.map { " \"\(printable($0))\"" } ?? ""))
                for e in i.endpoints {
                    print("    Endpoint 0x\(hex2(e.address)) \(e.isIn ? "IN " : "OUT") \(e.transferType) max packet \(e.maxPacketSize & 0x7FF)")
                }
            }
        }
    }
}

/// `{guid} (MS OS 1.0, interface 0)`: a GUID the firmware declares and where.
private func firmwareGUIDText(_ g: FirmwareGUID) -> String {
    let source = g.source == .msOS20 ? "MS OS 2.0" : "MS OS 1.0"
    return "\(g.guid) (\(source), " + (g.interfaceNumber.map { "interface \($0)" } ?? "whole device") + ")"
}

/// "ok" or "denied: <reason>"; nil when access was not checked.
private func accessDetail(_ s: DeviceSnapshot) -> String? {
    s.access == .unknown ? nil : s.access.description
}

private func configurationJSON(_ c: USBConfiguration) -> JSONValue {
    .object([
        ("value", .int(Int64(c.value))),
        ("interfaces", .array(c.interfaces.map { i in
            .object([
                ("number", .int(Int64(i.number))), ("alternateSetting", .int(Int64(i.alternateSetting))),
                ("class", .string(i.interfaceClass.description)), ("name", JSONValue(i.interfaceString)),
                ("endpoints", .array(i.endpoints.map { e in
                    .object([("address", .int(Int64(e.address))), ("direction", .string(e.isIn ? "in" : "out")),
                             ("type", .string("\(e.transferType)")), ("maxPacketSize", .int(Int64(e.maxPacketSize)))])
                })),
            ])
        })),
    ])
}

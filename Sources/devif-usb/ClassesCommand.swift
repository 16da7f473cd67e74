import ArgumentParser
import Devif
import FoundationEssentials
import Glibc

struct ClassesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classes",
        abstract: "List the interface classes in the catalog and where each came from.",
        discussion: """
            Built-in classes, then classes from /etc/devif/classes.d/*.conf, then from \
            ~/.config/devif/classes.d/*.conf ($XDG_CONFIG_HOME); a later definition of \
            the same GUID replaces an earlier one. $DEVIF_CLASSES_PATH (folders separated \
            by ':') or --classes-dir replaces the file folders. Problems in class files \
            are printed on stderr with file and line; the rest still loads. \
            A GUID that a device's firmware declares in MS OS descriptors is a class even \
            with no file (named firmware-declared): `list --class {guid}` finds it, and \
            `info` names the GUIDs each device declares. The text output ends with the \
            devices that may be asked for MS OS 1.0 descriptors ([ms-os-1.0] probe lines).
            """)

    @Flag(name: .customLong("json"), help: "Print one JSON array of class objects.")
    var json = false

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let loaded = DeviceManager.loadCatalog(folders: common.classFolders.isEmpty ? nil : common.classFolders)
        for d in loaded.diagnostics { common.notice("\(d)") }
        let classes = loaded.catalog.classes
        if json {
            print(JSONValue.array(classes.map { c -> JSONValue in
                .object([("classGuid", .string(c.guid.description)), ("className", .string(c.name)),
                         ("description", .string(c.description)), ("origin", .string(c.origin.description))])
            }).serialized())
            return
        }
        let w = classes.map(\.name.count).max() ?? 4
        for c in classes {
            print("\(c.guid)  \(c.name.padded(to: w))  \(c.description)  [\(c.origin)]")
        }
        let probes = loaded.catalog.msOS10Probes
        print("MS OS 1.0 probing (string 0xEE): "
              + (probes.isEmpty ? "no device ([ms-os-1.0] probe lines allow it)" : probes.map(\.description).joined(separator: "; ")))
    }
}

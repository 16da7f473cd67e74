import ArgumentParser
import Devif
import FoundationEssentials
import Glibc
import Logging

@main
struct DevifUSBCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devif-usb",
        abstract: "Device interfaces for Linux USB and HID devices: classes, symbolic links, hotplug.",
        discussion: """
            Every USB device, every interface of a composite USB device and every HID \
            device (hidraw) becomes an instance of the interface classes (GUIDs) it \
            matches, named by a symbolic link that stays the same at every plug.

            Exit status:
              0   success
              64  bad arguments (the message says what was expected)
              65  unknown symbolic link
              69  a service is unavailable (e.g. the device was removed)
              70  internal error
              77  permission denied (the message names the udev rule that fixes it)
            """,
        version: DeviceManager.version,
        subcommands: [ListCommand.self, WatchCommand.self, InfoCommand.self, ClassesCommand.self, RulesCommand.self,
                      AttachCommand.self, DetachCommand.self, ExportCommand.self, UnexportCommand.self],
        defaultSubcommand: nil)
}

/// Options every subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("registry"),
            help: ArgumentHelp("The instance registry file (default: $DEVIF_REGISTRY, else /var/lib/devif/registry.sqlite for root, ~/.local/state/devif/registry.sqlite for others).", valueName: "path"))
    var registryPath: String?

    @Option(name: .customLong("classes-dir"),
            help: ArgumentHelp("A folder of class files (*.conf) to use instead of the system and user folders; repeatable.", valueName: "dir"))
    var classFolders: [String] = []

    @Flag(name: .customLong("no-color"), help: "Never colour the output (colour is used only on a terminal).")
    var noColor = false

    @Flag(name: .customLong("quiet"), help: "Do not print notices (such as a missing USB bus) on stderr.")
    var quiet = false

    @Flag(name: [.customShort("v"), .customLong("verbose")],
          help: "Log the library's diagnostics on stderr: every arrival, removal and handle, with details.")
    var verbose = false

    func validate() throws {
        if quiet && verbose { throw ValidationError("--quiet and --verbose cannot be combined") }
    }

    func managerOptions() -> DeviceManager.Options {
        var o = DeviceManager.Options()
        if verbose {
            // The library's diagnostics at debug level, on stderr (stdout stays clean for JSON).
            var logger = Logger(label: "devif", factory: { StreamLogHandler.standardError(label: $0) })
            logger.logLevel = .debug
            o.logger = logger
        }
        o.registryPath = registryPath
        o.classFolders = classFolders.isEmpty ? nil : classFolders
        return o
    }

    var useColor: Bool { !noColor && isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil }

    /// Notices go to stderr, once each, so stdout stays clean for JSON.
    func notice(_ line: String) {
        if !quiet { writeNotice(line) }
    }
}

/// A class given on the command line: a GUID (with or without braces) or a class name.
struct ClassArgument: ExpressibleByArgument, Sendable {
    var text: String
    init?(argument: String) { text = argument }
    static var defaultCompletionKind: CompletionKind { .default }
}

/// Exit statuses from sysexits.h, as documented in --help.
enum Exit {
    static let usage = ExitCode(64)
    static let dataError = ExitCode(65)
    static let unavailable = ExitCode(69)
    static let software = ExitCode(70)
    static let noPermission = ExitCode(77)
}

func fail(_ message: String, _ code: ExitCode) -> ExitCode {
    writeNotice(message)
    return code
}

/// Sets up a manager, resolves `--class` against its catalog (a bad class
/// exits 64 before any source starts), starts the sources, waits (bounded)
/// for their first enumeration, and prints their notices.
func startedManager(_ common: CommonOptions, classArgument: ClassArgument? = nil, followChanges: Bool) async throws
    -> (DeviceManager, InterfaceFilter) {
    let manager: DeviceManager
    do {
        var options = common.managerOptions()
        options.followChanges = followChanges
        manager = try DeviceManager(options: options)
    } catch {
        throw fail("\(error)", Exit.unavailable)
    }
    let filter = InterfaceFilter(classGuid: try resolveClass(classArgument, in: manager.catalog))
    // With --verbose the logger prints notices already.
    if !common.verbose { manager.onNotice { common.notice($0.description) } }
    manager.start()
    if !(await manager.waitUntilEnumerated(timeout: .seconds(15))) {
        common.notice("the device sources did not finish enumerating within 15 s; the list may be incomplete")
    }
    return (manager, filter)
}

/// Resolves --class to a GUID through the catalog; unknown names are a usage error.
func resolveClass(_ arg: ClassArgument?, in catalog: ClassCatalog) throws -> GUID? {
    guard let arg else { return nil }
    if let c = catalog.lookup(arg.text) { return c.guid }
    if let g = try? GUID(parsing: arg.text) { return g }
    let names = catalog.classes.map(\.name).sorted().joined(separator: ", ")
    throw fail("--class \(arg.text.debugDescription): not a GUID like {a5dcbf10-6530-11d2-901f-00c04fb951ed} nor a class name (known: \(names))", Exit.usage)
}

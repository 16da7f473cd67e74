import ArgumentParser
import Devif
import DevifHID
import DevifUSB
import FoundationEssentials
import Glibc

struct RulesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "udev rules: persistent links under /dev/devif and access for chosen classes.",
        discussion: """
            The rules give every USB device node and hidraw node a link \
            /dev/devif/<class>/<symbolic link> per instance and class, with the names \
            the library gives, by running `devif-usb rules names` for each node; and \
            grant access to the instances of the classes named with --uaccess or \
            --group (never mode 0666). Rules/README.md explains deployment step by step.
            """,
        subcommands: [RulesGenerateCommand.self, RulesInstallCommand.self, RulesCheckCommand.self,
                      RulesNamesCommand.self])
}

/// The options `generate` and `install` share: which catalog, which grants.
struct RulesGenerationOptions: ParsableArguments {
    @Option(name: .customLong("catalog"),
            help: ArgumentHelp("A folder of class files (*.conf) the rules use; repeatable (default: /etc/devif/classes.d).", valueName: "dir"))
    var catalog: [String] = []

    @Flag(name: .customLong("builtin-classes-only"), help: "Use only the built-in classes (no class files).")
    var builtinOnly = false

    @Option(name: .customLong("uaccess"),
            help: ArgumentHelp("Grant the active local session's user access (TAG+=\"uaccess\") to the instances of this class (name or GUID); repeatable.", valueName: "class"))
    var uaccess: [ClassArgument] = []

    @Option(name: .customLong("group"),
            help: ArgumentHelp("Grant a group access (GROUP, MODE 0660) to the instances of a class, as CLASS=GROUP; repeatable.", valueName: "class=group"))
    var groups: [String] = []

    @Option(name: .customLong("program"),
            help: ArgumentHelp("The devif-usb the rules run (default: this one, /usr/local/bin/devif-usb when that is this one).", valueName: "path"))
    var program: String?

    @Option(name: .customLong("link-root"), help: ArgumentHelp("The links' folder below /dev.", valueName: "name"))
    var linkRoot = "devif"

    var folders: [String] { builtinOnly ? [] : (catalog.isEmpty ? ["/etc/devif/classes.d"] : catalog) }

    /// The rules text, or exits 64 with what to change.
    func rulesText(fileName: String, notice: (String) -> Void) throws -> String {
        if builtinOnly && !catalog.isEmpty {
            throw fail("--builtin-classes-only and --catalog exclude each other", Exit.usage)
        }
        let loaded = ClassCatalog.load(folders: folders)
        for d in loaded.diagnostics { notice("class file problem: \(d)") }
        var grants: [UdevAccessGrant] = []
        for c in uaccess {
            guard let guid = try resolveClass(c, in: loaded.catalog) else { continue }
            grants.append(UdevAccessGrant(classGUID: guid, access: .uaccess))
        }
        for text in groups {
            guard let eq = text.lastIndex(of: "="), eq != text.startIndex, text.index(after: eq) != text.endIndex else {
                throw fail("--group \(text.debugDescription): expected CLASS=GROUP, e.g. --group my-probe=plugdev", Exit.usage)
            }
            let group = String(text[text.index(after: eq)...])
            guard let guid = try resolveClass(ClassArgument(argument: String(text[..<eq])), in: loaded.catalog) else { continue }
            if getgrnam(group) == nil {
                notice("group \(group.debugDescription) does not exist on this machine; udev ignores GROUP= for an unknown group (create it with `groupadd --system \(group)`)")
            }
            grants.append(UdevAccessGrant(classGUID: guid, access: .group(group)))
        }
        let options = UdevRulesOptions(program: program ?? defaultProgramPath(), classFolders: folders,
                                       linkRoot: linkRoot, grants: grants, fileName: fileName)
        do {
            return try UdevRules.generate(catalog: loaded.catalog, options: options)
        } catch {
            throw fail(error.description, Exit.usage)
        }
    }

    /// This executable's real path: the rules must run the same devif-usb
    /// (the same naming code) that generated them.
    private func defaultProgramPath() -> String {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let installed = "/usr/local/bin/devif-usb"
        if let real = realpath(installed, nil) {
            defer { free(real) }
            if String(cString: real) == me { return installed }
        }
        return me
    }
}

struct RulesGenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Print (or write) udev rules made from the class catalog.",
        discussion: """
            The rules run `<program> rules names` for each USB device node and hidraw \
            node (udev cannot compute the names itself: they depend on descriptors, \
            HID usages and the catalog), turn its DEVIF_LINK_<n> properties into links \
            /dev/<link-root>/<class>/<symbolic link>, and grant access to the classes \
            named with --uaccess and --group. Install the result with `rules install` \
            (or copy it to /etc/udev/rules.d under a name that sorts before \
            73-seat-late.rules).
            """)

    @OptionGroup var generation: RulesGenerationOptions

    @Option(name: .customLong("output"), help: ArgumentHelp("Write to this file instead of standard output.", valueName: "file"))
    var output: String?

    @Flag(name: .customLong("quiet"), help: "Do not print notices on stderr.")
    var quiet = false

    func run() async throws {
        let name = output.map(fileName(of:)) ?? UdevRules.defaultFileName
        let text = try generation.rulesText(fileName: name.hasSuffix(".rules") ? name : UdevRules.defaultFileName) { line in
            if !quiet { writeNotice(line) }
        }
        guard let output else {
            writeOutput(text)
            return
        }
        do {
            try writeAtomically(text, to: output, mode: 0o644)
        } catch {
            throw fail("cannot write \(output): \(error)", error.isPermission ? Exit.noPermission : Exit.unavailable)
        }
    }
}

struct RulesInstallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Install the generated rules, reload udev and apply them to present devices.",
        discussion: """
            Writes DEST/NAME atomically (a temporary file renamed over it), runs \
            `udevadm control --reload`, then `udevadm trigger --action=change` for USB \
            devices and hidraw nodes, and `udevadm settle`. Needs root. DEST is \
            /etc/udev/rules.d by default; /run/udev/rules.d lasts until reboot.
            """)

    @OptionGroup var generation: RulesGenerationOptions

    @Option(name: .customLong("dest"), help: ArgumentHelp("The rules folder.", valueName: "dir"))
    var dest = "/etc/udev/rules.d"

    @Option(name: .customLong("name"), help: ArgumentHelp("The file name (must sort before 73-seat-late.rules to grant uaccess).", valueName: "file"))
    var name = UdevRules.defaultFileName

    @Flag(name: .customLong("no-reload"), help: "Only write the file; do not reload or trigger udev.")
    var noReload = false

    @Option(name: .customLong("settle-timeout"), help: ArgumentHelp("How long to wait for udev to apply the rules, in seconds.", valueName: "seconds"))
    var settleTimeout = 180

    func validate() throws {
        guard (1...3600).contains(settleTimeout) else {
            throw ValidationError("--settle-timeout must be 1 to 3600 seconds, not \(settleTimeout)")
        }
    }

    @Flag(name: .customLong("quiet"), help: "Do not print notices on stderr.")
    var quiet = false

    func run() async throws {
        let say: (String) -> Void = { line in
            if !quiet { writeNotice(line) }
        }
        let text = try generation.rulesText(fileName: name, notice: say)
        let path = joinPath(dest, name)
        do {
            try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
            try writeAtomically(text, to: path, mode: 0o644)
        } catch {
            throw fail("cannot write \(path): \(error)\(error.isPermission ? " (run it as root, e.g. with sudo)" : "")",
                       error.isPermission ? Exit.noPermission : Exit.unavailable)
        }
        print("wrote \(path)")
        guard !noReload else { return }
        let steps: [[String]] = [
            ["control", "--reload"],
            ["trigger", "--action=change", "--subsystem-match=usb", "--property-match=DEVTYPE=usb_device"],
            ["trigger", "--action=change", "--subsystem-match=hidraw"],
        ]
        for step in steps {
            let status = runUdevadm(step)
            guard status == 0 else {
                throw fail("`udevadm \(step.joined(separator: " "))` failed (exit \(status)); the file is written: "
                           + "run the udevadm steps by hand (Rules/README.md) once udevd runs", Exit.unavailable)
            }
            print("ran udevadm \(step.joined(separator: " "))")
        }
        // Each triggered event runs `rules names`; many devices on a slow
        // machine can outlast the wait. That is not a failure of the install.
        let settle = ["settle", "--timeout=\(settleTimeout)"]
        if runUdevadm(settle) == 0 {
            print("ran udevadm \(settle.joined(separator: " "))")
        } else {
            say("udev is still working through the triggered events after \(settleTimeout) s; the links appear as it finishes (`udevadm settle` waits for that)")
        }
    }

    private func runUdevadm(_ arguments: [String]) -> Int32 {
        let candidates = ["/usr/bin/udevadm", "/bin/udevadm", "/sbin/udevadm", "/usr/sbin/udevadm"]
        guard let udevadm = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return 127 }
        return runProgram(udevadm, arguments)
    }
}

struct RulesCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Say which present devices this user cannot open, why, and the rule that would fix it.",
        discussion: """
            One entry per device node (a USB device and its interfaces share one). \
            Exit status 0 when every present node can be opened, 77 when some cannot.
            """)

    @OptionGroup var common: CommonOptions

    func run() async throws {
        var options = common.managerOptions()
        options.inMemoryRegistry = true  // a check changes nothing, not even the registry
        options.followChanges = false
        let manager: DeviceManager
        do { manager = try DeviceManager(options: options) } catch { throw fail("\(error)", Exit.unavailable) }
        manager.onNotice { common.notice($0.description) }
        manager.start()
        if !(await manager.waitUntilEnumerated(timeout: .seconds(15))) {
            common.notice("the device sources did not finish enumerating within 15 s; the check may be incomplete")
        }
        defer { manager.stop() }
        let present = manager.interfaces(.all)
        var byNode: [String: [DeviceInterface]] = [:]
        for i in present { if let node = i.devnode { byNode[node, default: []].append(i) } }
        var denied = 0
        for node in byNode.keys.sorted() {
            let instances = byNode[node]!
            guard let first = instances.first, first.access == .denied else { continue }
            denied += 1
            let reason = instances.lazy.compactMap { i -> String? in
                if case .denied(let r) = i.snapshot?.access { return r } else { return nil }
            }.first ?? "access denied"
            print("\(node): cannot be opened by \(userDescription())")
            print("  why: \(reason)")
            for i in instances { print("  link: \(i.className ?? i.classGuid.description)/\(i.symbolicLink)") }
            let bus = first.snapshot?.hid?.busType ?? .usb
            print("  fix (this device, session user): "
                  + UdevRules.accessRule(kind: first.kind, vendorID: first.vendorId, productID: first.productId,
                                         busType: bus, access: .uaccess))
            print("  fix (this device, a group):       "
                  + UdevRules.accessRule(kind: first.kind, vendorID: first.vendorId, productID: first.productId,
                                         busType: bus, access: .group("plugdev")))
            // The most specific class: a catalog class rather than a built-in catch-all.
            let builtIn = Set(WellKnownClass.all.map(\.guid))
            let chosen = instances.first { !builtIn.contains($0.classGuid) } ?? instances.first!
            let className = chosen.className.flatMap { manager.catalog.lookup($0)?.guid == chosen.classGuid ? $0 : nil }
                ?? chosen.classGuid.description
            print("  fix (the whole class, with the links): sudo devif-usb rules install --uaccess \(className)")
        }
        print("\(byNode.count - denied) of \(byNode.count) device nodes can be opened by \(userDescription())")
        if denied > 0 { throw ExitCode(Exit.noPermission.rawValue) }
    }

    private func userDescription() -> String {
        let uid = geteuid()
        let name = getpwuid(uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } } ?? "?"
        return "\(name) (uid \(uid))"
    }
}

struct RulesNamesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "names",
        abstract: "Print the link properties of one device node, for udev's IMPORT{program}.",
        discussion: """
            NODE is a USB device node (/dev/bus/usb/BBB/DDD) or a hidraw node. Prints \
            DEVIF_LINK_0 ... DEVIF_LINK_31 (<link-root>/<class>/<symbolic link>, empty \
            when unused) and DEVIF_CLASSES (,guid,guid,). The names are the library's \
            for the instances on that node, classified with the given catalog; two \
            present devices with the same serial both get the serial-only name here \
            (the library's registry gives the second serial@port).

            udev runs this for every USB and hidraw event, so it reads that one node's \
            sysfs directory (/sys/dev/char/MAJOR:MINOR) and nothing else: no other \
            device is enumerated, no libusb context is made, the device is never \
            opened, and its time does not grow with the number of devices present. \
            Hence two differences from `devif-usb list`: classes a device declares in \
            Microsoft OS descriptors (firmware-declared GUIDs) are not among these \
            links, since reading them means opening the device and the registry \
            remembers per model only whether a device has them, not which GUIDs; and \
            strings the kernel did not cache in sysfs (interface strings of settings \
            not in use) are absent, which changes no name or class.
            """)

    @Argument(help: ArgumentHelp("The device node.", valueName: "node"))
    var node: String

    @Option(name: .customLong("classes-dir"), help: ArgumentHelp("A folder of class files; repeatable.", valueName: "dir"))
    var classFolders: [String] = []

    @Flag(name: .customLong("builtin-classes-only"), help: "Use only the built-in classes.")
    var builtinOnly = false

    @Option(name: .customLong("link-root"), help: ArgumentHelp("The links' folder below /dev.", valueName: "name"))
    var linkRoot = "devif"

    func run() async throws {
        let catalog = ClassCatalog.load(folders: builtinOnly ? [] : classFolders).catalog
        // This node's sysfs only (USBSource.snapshot(ofNode:), HIDSource.snapshot(ofNode:)).
        let found = node.hasPrefix("/dev/bus/usb/")
            ? USBSource.snapshot(ofNode: node).map { [$0.snapshot] }
            : HIDSource.snapshot(ofNode: node).map { [$0] }
        let snapshots = (try? found.get()) ?? []
        let (text, dropped) = UdevRules.importProperties(linkRoot: linkRoot, snapshots: snapshots, catalog: catalog)
        writeOutput(text)
        if case .failure(let why) = found {
            writeNotice("no present instance has the node \(node.debugDescription): \(why)")
        }
        if dropped > 0 {
            writeNotice("\(node): \(dropped) links beyond the \(UdevRules.linkSlots) the rules can hold were left out")
        }
    }
}

/// Writes `text` to a temporary file in the same folder, flushes it, and
/// renames it over `path`, so readers (udev) see the old file or the new one,
/// never half of one. The temporary name starts with '.' and does not end in
/// `.rules`, so udev never reads it.
func writeAtomically(_ text: String, to path: String, mode: mode_t) throws(FileWriteError) {
    let folder = folder(of: path)
    let temp = (folder.isEmpty ? "." : folder) + "/.devif-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
    let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
    guard fd >= 0 else { throw FileWriteError(errno: errno, step: "create \(temp)") }
    var ok = false
    defer {
        if !ok { unlink(temp) }
    }
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            let e = errno
            close(fd)
            throw FileWriteError(errno: e, step: "write \(temp)")
        }
        written += n
    }
    if fchmod(fd, mode) != 0 || fsync(fd) != 0 {
        let e = errno
        close(fd)
        throw FileWriteError(errno: e, step: "flush \(temp)")
    }
    close(fd)
    guard rename(temp, path) == 0 else { throw FileWriteError(errno: errno, step: "rename \(temp) to \(path)") }
    ok = true
    let dir = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dir >= 0 {
        _ = fsync(dir)
        close(dir)
    }
}

/// A file could not be written; `step` names what failed.
struct FileWriteError: Error, CustomStringConvertible {
    let errno: Int32
    let step: String
    var description: String { "\(step): \(String(cString: strerror(errno)))" }
    var isPermission: Bool { errno == EACCES || errno == EPERM || errno == EROFS }
}

extension Error {
    var isPermission: Bool { (self as? FileWriteError)?.isPermission ?? ((self as? CocoaError)?.code == .fileWriteNoPermission) }
}

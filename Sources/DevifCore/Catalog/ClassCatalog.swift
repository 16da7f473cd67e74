import FoundationEssentials
import Glibc

/// A class and the rules that make a device one of its instances.
public struct ClassDefinition: Hashable, Sendable, Codable {
    /// The class: GUID, name, description, origin.
    public var interfaceClass: InterfaceClass
    /// `match = …` lines; the class matches a subject if any rule does.
    /// Empty for a class that only names a GUID (firmware-declared) and for the
    /// well-known classes, whose fixed rules live in ``Classifier``.
    public var rules: [MatchRule]

    /// A definition of `interfaceClass` with these match rules (none: the class
    /// only names its GUID, for devices that declare it in firmware).
    public init(interfaceClass: InterfaceClass, rules: [MatchRule] = []) {
        self.interfaceClass = interfaceClass
        self.rules = rules
    }

    /// The class's GUID.
    public var guid: GUID { interfaceClass.guid }
}

/// A problem in a catalog file. The rest of the file still loads.
public struct CatalogDiagnostic: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The file (or folder) path.
    public var file: String
    /// 1-based line, or nil for the file as a whole.
    public var line: Int?
    /// What was wrong and what was expected.
    public var message: String

    /// A problem found at `line` of `file` (nil: the file as a whole).
    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    /// `file:line: message`.
    public var description: String {
        line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)"
    }
}

/// The classes devif knows: built-ins plus classes from catalog files.
///
/// Sources, in order (see CATALOG-FORMAT.md): the built-in classes, then
/// `/etc/devif/classes.d/*.conf`, then `$XDG_CONFIG_HOME/devif/classes.d/*.conf`
/// (default `~/.config/devif/classes.d`); `DEVIF_CLASSES_PATH` (folders
/// separated by ':') replaces the two folders. Files within a folder are read in
/// byte order of their names. A class read later replaces an earlier one with
/// the same GUID, so user > system > built-in.
public struct ClassCatalog: Hashable, Sendable, Codable {
    /// In load order; a replaced class is listed where its replacement was read.
    public private(set) var definitions: [ClassDefinition]
    /// The devices that may be asked for the MS OS 1.0 string descriptor
    /// 0xEE (`[ms-os-1.0]` sections of every file read, in order). Empty:
    /// no device is asked.
    public var msOS10Probes: [MSOS10ProbeRule] = []

    /// An empty catalog (not even the built-ins).
    public init() { definitions = [] }

    /// Whether a device with these ids may be asked for string 0xEE.
    public func allowsMSOS10Probe(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16?) -> Bool {
        msOS10Probes.allowMSOS10Probe(vendorID: vendorID, productID: productID, bcdDevice: bcdDevice)
    }

    /// A catalog of `definitions`; a later one with the same GUID replaces an earlier one.
    public init(_ definitions: [ClassDefinition]) {
        self.definitions = []
        for definition in definitions { add(definition) }
    }

    /// The well-known classes only.
    public static let builtIn = ClassCatalog(WellKnownClass.all.map { ClassDefinition(interfaceClass: $0) })

    /// Adds a class, replacing the one with the same GUID (if any). Returns
    /// the definition it replaced.
    @discardableResult
    public mutating func add(_ definition: ClassDefinition) -> ClassDefinition? {
        let old = definitions.firstIndex { $0.guid == definition.guid }.map { definitions.remove(at: $0) }
        definitions.append(definition)
        return old
    }

    /// The definition of class `guid`, if the catalog has one.
    public subscript(guid: GUID) -> ClassDefinition? {
        definitions.first { $0.guid == guid }
    }

    /// The class `guid` is: the catalog's definition, or a firmware-declared class.
    public func interfaceClass(for guid: GUID) -> InterfaceClass {
        self[guid]?.interfaceClass ?? .firmwareDeclared(guid)
    }

    /// The class named by `text`: GUID text (any GUID; one the catalog does
    /// not define is a firmware-declared class), or a class name (ASCII case
    /// ignored; if two classes share a name, the one read last).
    public func lookup(_ text: String) -> InterfaceClass? {
        if let guid = try? GUID(parsing: text) { return interfaceClass(for: guid) }
        let wanted = asciiLowercased(text)
        return definitions.last { asciiLowercased($0.interfaceClass.name) == wanted }?.interfaceClass
    }

    // MARK: Loading

    /// The result of loading a catalog: never fails for content.
    public struct LoadResult: Sendable {
        /// The catalog: the built-in classes (unless left out) and every good class read.
        public var catalog: ClassCatalog
        /// Problems found, in the order met.
        public var diagnostics: [CatalogDiagnostic]
        /// The files read, in order.
        public var files: [String]
    }

    /// The folders searched by default: `DEVIF_CLASSES_PATH` split at ':' if it
    /// is set (empty entries ignored, so an empty value means built-ins only);
    /// otherwise `/etc/devif/classes.d` and the user's
    /// `$XDG_CONFIG_HOME/devif/classes.d` (`$HOME/.config/...` when
    /// XDG_CONFIG_HOME is unset, empty or relative, per the XDG spec).
    public static func defaultFolders(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        if let path = environment["DEVIF_CLASSES_PATH"] {
            return path.split(separator: ":").map(String.init)
        }
        var folders = ["/etc/devif/classes.d"]
        if let xdg = environment["XDG_CONFIG_HOME"], xdg.hasPrefix("/") {
            folders.append(xdg + "/devif/classes.d")
        } else if let home = environment["HOME"], !home.isEmpty {
            folders.append(home + "/.config/devif/classes.d")
        }
        return folders
    }

    /// Catalog files larger than this are skipped with a diagnostic.
    public static let maximumFileSize = 1 << 20

    /// Loads the built-in classes and then every `*.conf` file of `folders`
    /// in order (names in byte order within a folder; names starting with '.'
    /// are skipped). A missing folder is not a problem; an unreadable one is
    /// reported.
    public static func load(folders: [String], includeBuiltIn: Bool = true) -> LoadResult {
        var result = LoadResult(catalog: includeBuiltIn ? .builtIn : ClassCatalog(), diagnostics: [], files: [])
        let fileManager = FileManager.default
        for folder in folders {
            guard let isFolder = isDirectory(at: folder) else { continue }
            guard isFolder else {
                result.diagnostics.append(CatalogDiagnostic(
                    file: folder, line: nil, message: "is not a folder; expected a folder of *.conf files"))
                continue
            }
            let names: [String]
            do {
                names = try fileManager.contentsOfDirectory(atPath: folder)
            } catch {
                result.diagnostics.append(CatalogDiagnostic(
                    file: folder, line: nil, message: "cannot list the folder (\(error))"))
                continue
            }
            let confs = names.filter { $0.hasSuffix(".conf") && !$0.hasPrefix(".") }
                .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for name in confs {
                let path = joinPath(folder, name)
                guard isDirectory(at: path) == false else { continue }
                loadFile(path, into: &result)
            }
        }
        return result
    }

    /// Loads from ``defaultFolders(environment:)``.
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment) -> LoadResult {
        load(folders: defaultFolders(environment: environment))
    }

    private static func loadFile(_ path: String, into result: inout LoadResult) {
        // The size first: a catalog file is a few lines per class, and a
        // huge one (or a device file) is not read at all.
        var info = stat()
        if stat(path, &info) == 0, info.st_size > maximumFileSize {
            result.diagnostics.append(CatalogDiagnostic(
                file: path, line: nil, message: "is larger than \(maximumFileSize) bytes; skipped (a catalog file is a few lines per class)"))
            return
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            result.diagnostics.append(CatalogDiagnostic(file: path, line: nil, message: "cannot read the file (\(error))"))
            return
        }
        guard data.count <= maximumFileSize else {
            result.diagnostics.append(CatalogDiagnostic(
                file: path, line: nil, message: "is larger than \(maximumFileSize) bytes; skipped (a catalog file is a few lines per class)"))
            return
        }
        result.files.append(path)
        let parsed = CatalogParser.parse(Array(data), file: path)
        result.diagnostics += parsed.diagnostics
        result.catalog.merge(parsed.definitions, from: path, diagnostics: &result.diagnostics)
        // Probe permissions add up across files: each names devices it vouches for.
        result.catalog.msOS10Probes += parsed.msOS10Probes
    }

    /// Adds `definitions` read from `file` (see ``CatalogParser``), noting in
    /// `diagnostics` when a name now means two classes.
    public mutating func merge(_ definitions: [ClassDefinition], from file: String,
                               diagnostics: inout [CatalogDiagnostic]) {
        for definition in definitions {
            add(definition)
            let name = asciiLowercased(definition.interfaceClass.name)
            if let other = self.definitions.first(where: {
                $0.guid != definition.guid && asciiLowercased($0.interfaceClass.name) == name
            }) {
                var line: Int?
                if case .file(_, let headerLine) = definition.interfaceClass.origin { line = headerLine }
                diagnostics.append(CatalogDiagnostic(
                    file: file, line: line,
                    message: "name '\(definition.interfaceClass.name)' is also the name of \(other.guid) "
                        + "(\(other.interfaceClass.origin)); '--class \(definition.interfaceClass.name)' now means "
                        + "\(definition.guid). Give one of them another name"))
            }
        }
    }
}

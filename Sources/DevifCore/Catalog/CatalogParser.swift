/// Reads the catalog file format (CATALOG-FORMAT.md has the full text):
///
///     # Comments are whole lines starting with '#'.
///     [class {0123abcd-4567-89ab-cdef-0123456789ab}]
///     name = my-probe
///     description = My debug probe's bulk interface
///     match = vid=1209 pid=0001 interface=01
///     match = usb-class=ff usb-subclass=42 usb-protocol=01
///
/// - A section `[class {guid}]` starts a class (braces optional); every line
///   until the next header belongs to it.
/// - `name = …` (required; 1-64 of `A-Z a-z 0-9 . _ -`, starting with a letter
///   or digit), `description = …` (optional free text), and any number of
///   `match = …` lines. A class matches if any of its match lines does.
/// - A match line is criteria separated by spaces, all of which must hold:
///   `kind=usb|hid`, `vid=`, `pid=`, `bcd-device=` (hex, 1-4 digits),
///   `device-class=`, `device-subclass=`, `device-protocol=`, `interface=`,
///   `usb-class=`, `usb-subclass=`, `usb-protocol=` (hex, 1-2 digits),
///   `hid-usage-page=`, `hid-usage=` (hex, 1-4 digits), `hid-bus=` (`usb`,
///   `bluetooth`, `virtual`/`uhid`, `i2c`, `spi` or hex), `firmware-guid`
///   (the device declares this class's GUID) or `firmware-guid={guid}`. Hex
///   may start with `0x`.
///
/// - A section `[ms-os-1.0]` lists, in `probe = …` lines, the devices devif
///   may ask for the MS OS 1.0 string descriptor 0xEE: `vid=`, `pid=`,
///   `bcd-device=` (hex, 1-4 digits, all that are given must hold) or `any`.
///
/// A line that is wrong gives a ``CatalogDiagnostic`` and is skipped (a bad
/// match line is dropped whole, never half-applied); the rest of the file loads.
public enum CatalogParser {
    /// The classes a file defines, in order, and its problems.
    public struct Parsed: Sendable {
        /// The classes the file defines, in file order.
        public var definitions: [ClassDefinition]
        /// What was wrong in the file (the lines concerned were skipped).
        public var diagnostics: [CatalogDiagnostic]
        /// `probe = …` lines of `[ms-os-1.0]` sections, in order.
        public var msOS10Probes: [MSOS10ProbeRule] = []
    }

    /// Parses file contents given as text.
    public static func parse(_ text: String, file: String) -> Parsed {
        parse(Array(text.utf8), file: file)
    }

    /// Parses file contents given as bytes (lines that are not UTF-8 are reported).
    public static func parse(_ bytes: [UInt8], file: String) -> Parsed {
        var state = State(file: file)
        for (index, rawLine) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            var lineBytes = rawLine
            if lineBytes.last == UInt8(ascii: "\r") { lineBytes = lineBytes.dropLast() }
            guard let line = String(validating: lineBytes, as: UTF8.self) else {
                state.diagnose(lineNumber, "the line is not valid UTF-8; catalog files are UTF-8 text")
                continue
            }
            state.read(line: trimmed(line), number: lineNumber)
        }
        state.finishSection()
        return Parsed(definitions: state.definitions, diagnostics: state.diagnostics, msOS10Probes: state.msOS10Probes)
    }

    private struct Section {
        var guid: GUID
        var headerLine: Int
        var name: String?
        var description: String?
        var rules: [MatchRule] = []
    }

    private struct State {
        let file: String
        var definitions: [ClassDefinition] = []
        var diagnostics: [CatalogDiagnostic] = []
        var section: Section?
        /// Inside an `[ms-os-1.0]` section.
        var inProbeSection = false
        var msOS10Probes: [MSOS10ProbeRule] = []
        /// After a bad header: its lines are skipped without one diagnostic each.
        var skippingSection = false

        init(file: String) { self.file = file }

        mutating func diagnose(_ line: Int, _ message: String) {
            diagnostics.append(CatalogDiagnostic(file: file, line: line, message: message))
        }

        mutating func read(line: Substring, number: Int) {
            if line.isEmpty || line.hasPrefix("#") { return }
            if line.hasPrefix("[") {
                finishSection()
                readHeader(line, number: number)
                return
            }
            if skippingSection { return }
            guard let equals = line.firstIndex(of: "=") else {
                diagnose(number, "expected 'key = value', a '[class {guid}]' header or a '#' comment, found \(quotedForMessage(String(line)))")
                return
            }
            let key = String(trimmed(line[..<equals]))
            let value = trimmed(line[line.index(after: equals)...])
            if inProbeSection {
                guard key == "probe" else {
                    diagnose(number, "unknown key \(quotedForMessage(key)) in [ms-os-1.0]; expected probe = vid=… pid=… bcd-device=… or probe = any")
                    return
                }
                switch CatalogParser.parseProbe(value) {
                case .success(let rule): msOS10Probes.append(rule)
                case .failure(let problem): diagnose(number, problem.message + "; this probe line is ignored")
                }
                return
            }
            guard section != nil else {
                diagnose(number, "'\(key)' is outside a class section; start one with '[class {guid}]'")
                return
            }
            switch key {
            case "name":
                let name = String(value)
                guard InterfaceClass.isValidName(name) else {
                    diagnose(number, "expected a name of 1-64 characters from A-Z a-z 0-9 . _ -, starting with a "
                             + "letter or digit and not a GUID, found \(quotedForMessage(name))")
                    return
                }
                if section!.name != nil { diagnose(number, "a second 'name' line; this one replaces the first") }
                section!.name = name
            case "description":
                guard value.utf8.count <= 500 else {
                    diagnose(number, "expected a description of at most 500 bytes, found \(value.utf8.count)")
                    return
                }
                if section!.description != nil { diagnose(number, "a second 'description' line; this one replaces the first") }
                section!.description = String(value)
            case "match":
                switch parseMatch(value) {
                case .success(let rule): section!.rules.append(rule)
                case .failure(let problem): diagnose(number, problem.message + "; this match line is ignored")
                }
            default:
                diagnose(number, "unknown key \(quotedForMessage(key)); expected name, description or match")
            }
        }

        mutating func readHeader(_ line: Substring, number: Int) {
            inProbeSection = false
            if line == "[ms-os-1.0]" {
                skippingSection = false
                inProbeSection = true
                return
            }
            let words = line.hasSuffix("]") ? line.dropFirst().dropLast().split(whereSeparator: { $0 == " " || $0 == "\t" }) : []
            guard words.count == 2, words[0] == "class", let guid = try? GUID(parsing: words[1]) else {
                diagnose(number, "expected a section header '[class {xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}]', found "
                         + "\(quotedForMessage(String(line))); lines up to the next header are skipped")
                skippingSection = true
                return
            }
            skippingSection = false
            if let earlier = definitions.first(where: { $0.guid == guid }),
               case .file(_, let earlierLine) = earlier.interfaceClass.origin {
                diagnose(number, "class \(guid) is already defined at line \(earlierLine) of this file; this definition replaces it")
            }
            section = Section(guid: guid, headerLine: number)
        }

        mutating func finishSection() {
            guard let section else { return }
            self.section = nil
            if section.name == nil {
                diagnose(section.headerLine, "class \(section.guid) has no 'name = …' line; it is listed under its GUID")
            }
            definitions.removeAll { $0.guid == section.guid }
            definitions.append(ClassDefinition(
                interfaceClass: InterfaceClass(guid: section.guid, name: section.name ?? section.guid.description,
                                               description: section.description ?? "",
                                               origin: .file(path: file, line: section.headerLine)),
                rules: section.rules))
        }
    }

    struct Problem: Error { let message: String }

    /// Parses the value of a `probe =` line of `[ms-os-1.0]`.
    static func parseProbe(_ value: Substring) -> Result<MSOS10ProbeRule, Problem> {
        let tokens = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
        if tokens == ["any"] { return .success(.any) }
        guard !tokens.isEmpty else {
            return .failure(Problem(message: "a probe line needs vid=, pid= or bcd-device= (or 'any' for every device)"))
        }
        var rule = MSOS10ProbeRule()
        for token in tokens {
            guard let equals = token.firstIndex(of: "=") else {
                return .failure(Problem(message: "expected vid=, pid= or bcd-device=, found \(quotedForMessage(String(token)))"))
            }
            let key = token[..<equals]
            var digits = token[token.index(after: equals)...]
            if digits.hasPrefix("0x") || digits.hasPrefix("0X") { digits = digits.dropFirst(2) }
            guard let number = parseHex(digits, maxDigits: 4).map({ UInt16($0) }) else {
                return .failure(Problem(message: "expected \(key)=1-4 hex digits, found \(quotedForMessage(String(token)))"))
            }
            let seen: Bool
            switch key {
            case "vid": seen = rule.vendorID != nil; rule.vendorID = number
            case "pid": seen = rule.productID != nil; rule.productID = number
            case "bcd-device": seen = rule.bcdDevice != nil; rule.bcdDevice = number
            default:
                return .failure(Problem(message: "unknown criterion \(quotedForMessage(String(key))) in a probe line; expected vid, pid or bcd-device"))
            }
            if seen { return .failure(Problem(message: "criterion '\(key)' appears twice; each may appear once per probe line")) }
        }
        return .success(rule)
    }

    /// Parses the value of a `match =` line.
    static func parseMatch(_ value: Substring) -> Result<MatchRule, Problem> {
        let tokens = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard !tokens.isEmpty else {
            return .failure(Problem(message: "a match line needs at least one criterion (to match every USB device write 'kind=usb')"))
        }
        var rule = MatchRule()
        var seen = Set<Substring>()
        for token in tokens {
            let key: Substring
            let argument: Substring?
            if let equals = token.firstIndex(of: "=") {
                key = token[..<equals]
                argument = token[token.index(after: equals)...]
            } else {
                key = token
                argument = nil
            }
            guard seen.insert(key).inserted else {
                return .failure(Problem(message: "criterion '\(key)' appears twice; each may appear once per match line"))
            }
            func hex(_ digits: Int) -> UInt64? {
                guard var text = argument else { return nil }
                if text.hasPrefix("0x") || text.hasPrefix("0X") { text = text.dropFirst(2) }
                return parseHex(text, maxDigits: digits)
            }
            func expected(_ what: String) -> Result<MatchRule, Problem> {
                .failure(Problem(message: "expected \(key)=\(what), found \(quotedForMessage(String(token)))"))
            }
            switch key {
            case "kind":
                guard let argument, let kind = DeviceKind(rawValue: String(argument)) else { return expected("usb or hid") }
                rule.kind = kind
            case "vid", "pid", "bcd-device", "hid-usage-page", "hid-usage":
                guard let number = hex(4).map({ UInt16($0) }) else { return expected("1-4 hex digits") }
                switch key {
                case "vid": rule.vendorID = number
                case "pid": rule.productID = number
                case "bcd-device": rule.bcdDevice = number
                case "hid-usage-page": rule.hidUsagePage = number
                default: rule.hidUsage = number
                }
            case "device-class", "device-subclass", "device-protocol", "interface", "usb-class", "usb-subclass",
                 "usb-protocol":
                guard let number = hex(2).map({ UInt8($0) }) else { return expected("1-2 hex digits") }
                switch key {
                case "device-class": rule.deviceClass = number
                case "device-subclass": rule.deviceSubclass = number
                case "device-protocol": rule.deviceProtocol = number
                case "interface": rule.interfaceNumber = number
                case "usb-class": rule.interfaceClass = number
                case "usb-subclass": rule.interfaceSubclass = number
                default: rule.interfaceProtocol = number
                }
            case "hid-bus":
                guard let argument, let bus = BusType(parsing: String(argument)) else {
                    return expected("usb, bluetooth, virtual, uhid, i2c, spi or 1-4 hex digits")
                }
                rule.hidBus = bus
            case "firmware-guid":
                if let argument {
                    guard let guid = try? GUID(parsing: argument) else { return expected("{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}") }
                    rule.firmwareGUID = .guid(guid)
                } else {
                    rule.firmwareGUID = .ownClass
                }
            default:
                return .failure(Problem(message: "unknown criterion \(quotedForMessage(String(key))); expected one of "
                                        + "kind vid pid bcd-device device-class device-subclass device-protocol interface "
                                        + "usb-class usb-subclass usb-protocol hid-usage-page hid-usage hid-bus firmware-guid"))
            }
        }
        let usbOnly = rule.deviceClass != nil || rule.deviceSubclass != nil || rule.deviceProtocol != nil
            || rule.interfaceClass != nil || rule.interfaceSubclass != nil || rule.interfaceProtocol != nil
        let hidOnly = rule.hidUsagePage != nil || rule.hidUsage != nil || rule.hidBus != nil
        if usbOnly && (hidOnly || rule.kind == .hid) {
            return .failure(Problem(message: "device-/usb- criteria apply to USB devices and hid-/kind=hid to HID devices; "
                                    + "one match line cannot have both (write two classes or two lines)"))
        }
        if hidOnly && rule.kind == .usb {
            return .failure(Problem(message: "hid- criteria apply to HID devices, so they cannot go with kind=usb"))
        }
        return .success(rule)
    }
}

/// Drops leading and trailing spaces and tabs.
private func trimmed(_ text: some StringProtocol) -> Substring {
    let text = Substring(text)
    let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    guard let first = text.firstIndex(where: { !isBlank($0) }) else { return text[text.endIndex...] }
    let last = text.lastIndex(where: { !isBlank($0) })!
    return text[first...last]
}

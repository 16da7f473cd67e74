// What a person reads (issue 19): the human forms of `list`, `list --tree`,
// `watch` and `info` (columns, escaped hostile strings, colour only on a
// terminal and never with NO_COLOR), and the consumer package, a program
// outside devif built on `import Devif` alone, run against gadgets.
import Devif
import Foundation

private let registry = "/tmp/devif-lab-cli.sqlite"
private let esc = "\u{1B}"

/// `devif-usb ARGS` on a pseudo-terminal (util-linux `script`), as a person
/// runs it, with `environment` added; returns what the terminal showed.
private func onTerminal(_ args: [String], environment: [String] = []) throws -> String {
    let command = ([devifUSBPath] + args).map { "'" + $0 + "'" }.joined(separator: " ")
    let r = try runProcess("/usr/bin/env", environment + ["/usr/bin/script", "-qec", command, "/dev/null"])
    try expectEqual(r.status, 0, "devif-usb \(args.joined(separator: " ")) on a terminal (stderr: \(r.stderr))")
    return r.output.replacingOccurrences(of: "\r\n", with: "\n")
}

/// The lines of one device's block in `list --tree` output: from its head
/// line (starting with `head`) to the blank line after it.
private func treeBlock(_ output: String, head: String) throws -> [String] {
    let lines = output.components(separatedBy: "\n")
    guard let start = lines.firstIndex(where: { $0.hasPrefix(head) }) else {
        throw LabFailure("list --tree has no line starting \(head.debugDescription):\n\(output)")
    }
    return Array(lines[start...].prefix { !$0.isEmpty })
}

/// A process whose stdout lines are read as they come.
final class LineReader: @unchecked Sendable {  // the Process is only touched from the test task
    let process = Process()
    private let lines = Inbox<String>()

    init(_ path: String, _ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        try process.run()
        forEachLine(of: out.fileHandleForReading) { [lines] line in lines.post(String(decoding: line, as: UTF8.self)) }
    }

    func next(within seconds: Double, _ what: String, where predicate: @escaping @Sendable (String) -> Bool) async throws -> String {
        try await lines.next(within: seconds, what, where: predicate)
    }

    /// Waits (bounded) for the process to exit by itself; its status.
    func exitStatus(within seconds: Double, _ what: String) async throws -> Int32 {
        let p = process
        return try await within(seconds, what) { () async -> Int32 in
            await withCheckedContinuation { c in
                DispatchQueue.global().async { p.waitUntilExit(); c.resume(returning: p.terminationStatus) }
            }
        }
    }

    func kill() { if process.isRunning { process.terminate() } }
}

func registerCLIOutputTests(_ r: inout LabRunner) {
    r.add("cli: list --tree shows a composite device with its interfaces and HID node beneath it; colour only on a terminal, never with NO_COLOR") {
        try LabClasses.install()
        try Devlab.run(["create", "tr1", "composite", "--vid", "1209", "--pid", "0c10", "--serial", "LAB-TREE-1",
                        "--manufacturer", "devif lab", "--product", "Tree composite"])
        let plugged = try Devlab.plug("tr1")
        defer { _ = try? Devlab.run(["remove", "tr1"]) }
        try settleUdev()
        let listed = try cliList([], registry: registry).filter { ($0["productId"] as? String) == "0c10" }
        try expectEqual(listed.count, 4, "instances of the composite 1209:0c10")
        func node(_ link: String) throws -> String {
            try (listed.first { $0["symbolicLink"] as? String == link }?["devnode"] as? String).orFail("no devnode for \(link)")
        }
        let device = "usb#vid_1209&pid_0c10#LAB-TREE-1#\(usbDeviceClass)"
        let hid = "hid#vid_1209&pid_0c10&mi_00#LAB-TREE-1#\(hidClass)"
        let chain = try plugged.port_chain.orFail("devlab gave no port chain")
        let expected = [
            "usb 1209:0c10  serial LAB-TREE-1  \"devif lab Tree composite\"  port \(chain)  \(try node(device))",
            "├─ device",
            "│  └─ usb-device  \(device)",
            "├─ interface 00",
            "│  ├─ lab-hid-interface  usb#vid_1209&pid_0c10&mi_00#LAB-TREE-1#\(LabClasses.hidInterface)",
            "│  └─ hid \(try node(hid))  interface 00",
            "│     └─ hid  \(hid)",
            "└─ interface 01",
            "   └─ lab-vendor-bulk  usb#vid_1209&pid_0c10&mi_01#LAB-TREE-1#\(LabClasses.vendorBulk)",
        ]
        let args = ["list", "--tree", "--registry", registry, "--classes-dir", LabClasses.folder]
        let piped = try runCLI(args)
        try expectEqual(try treeBlock(piped, head: "usb 1209:0c10"), expected, "the composite's tree (piped)")
        try expect(!piped.contains(esc), "list --tree in a pipe has escape sequences")
        let terminal = try onTerminal(args)
        try expect(terminal.contains(esc + "[1musb" + esc + "[0m 1209:0c10"), "list --tree on a terminal is not coloured:\n\(terminal)")
        try expect(terminal.contains(esc + "[36mlab-vendor-bulk" + esc + "[0m  usb#vid_1209&pid_0c10&mi_01#"), "class names on a terminal are not coloured")
        let noColor = try onTerminal(args, environment: ["NO_COLOR=1"])
        try expect(!noColor.contains(esc), "NO_COLOR=1: list --tree on a terminal still has escape sequences")
        try expectEqual(try treeBlock(noColor, head: "usb 1209:0c10"), expected, "the composite's tree (terminal, NO_COLOR)")
        let flag = try onTerminal(args + ["--no-color"])
        try expect(!flag.contains(esc), "--no-color: list --tree on a terminal still has escape sequences")
        // --verbose: the library's diagnostics on stderr (swift-log), stdout unchanged.
        let verbose = try runProcess(devifUSBPath, args + ["--verbose"])
        try expectEqual(verbose.status, 0, "list --tree --verbose status (stderr: \(verbose.stderr))")
        try expectEqual(try treeBlock(verbose.output, head: "usb 1209:0c10"), expected, "the composite's tree with --verbose")
        let logged = verbose.stderr.split(separator: "\n").filter { $0.contains(" debug devif:") && $0.contains(" arrival") }
        try expect(logged.contains { $0.contains("link=\(device)") }, "--verbose logs no arrival of \(device):\n\(verbose.stderr.prefix(2000))")
        try expect(!(try runProcess(devifUSBPath, args)).stderr.contains("debug"), "without --verbose, debug lines on stderr")
        // --json and --tree do not combine: a usage error, said so.
        let both = try runProcess(devifUSBPath, args + ["--json"])
        try expectEqual(both.status, 64, "list --tree --json exit status")
        try expect(both.stderr.contains("--json and --tree cannot be combined"), "list --tree --json says why: \(both.stderr)")
        figure("list --tree of a composite device:\n    " + expected.joined(separator: "\n    "))
    }

    r.add("cli: human list, watch and info: aligned columns, hostile strings escaped, colour only on a terminal, never with NO_COLOR") {
        try LabClasses.install()
        let serial = "ser\u{1b}[31mX\t1"
        let product = "tab\there\u{1b}[31m red\u{7f}"
        // The sentinel is present before the watcher starts: once the
        // watcher prints it, the watcher is watching.
        try Devlab.run(["create", "hs0", "uhid", "--vid", "1209", "--pid", "0c0e", "--serial", "LAB-HS-0"])
        try Devlab.plug("hs0")
        defer { _ = try? Devlab.run(["remove", "hs0"]) }
        try Devlab.run(["create", "hs1", "loopback", "--vid", "1209", "--pid", "0c0f", "--serial", serial,
                        "--manufacturer", "devif lab", "--product", product])
        defer { _ = try? Devlab.run(["remove", "hs1"]) }
        try settleUdev()
        let common = ["--registry", registry, "--classes-dir", LabClasses.folder]
        let watcher = try LineReader(devifUSBPath, ["watch", "--enumerate", "--timeout", "120"] + common)
        defer { watcher.kill() }
        _ = try await watcher.next(within: 30, "the watcher to print the sentinel") { $0.contains("pid_0c0e") }
        let plugged = try Devlab.plug("hs1")
        let arrivals = [try await watcher.next(within: 30, "the hostile loopback's first arrival") { $0.contains("pid_0c0f") },
                        try await watcher.next(within: 30, "the hostile loopback's second arrival") { $0.contains("pid_0c0f") }]
        try settleUdev()

        // list: one header, every row's link column where the header says.
        let listing = try runCLI(["list"] + common)
        try expect(!listing.contains(esc) && !listing.contains("\t") && !listing.contains("\u{7f}"),
                   "list prints raw control characters from a device string:\n\(listing)")
        let lines = listing.split(separator: "\n").map(String.init)
        let header = try lines.first.orFail("list printed nothing")
        try expectEqual(header.split(separator: " ", omittingEmptySubsequences: true).map(String.init),
                        ["STATE", "KIND", "VID:PID", "MI", "SERIAL", "CLASS", "ACCESS", "SYMBOLIC", "LINK"], "list's header")
        let linkColumn = try header.range(of: "SYMBOLIC LINK").orFail("no SYMBOLIC LINK column").lowerBound.utf16Offset(in: header)
        let ours = lines.filter { $0.contains("pid_0c0f") }
        try expectEqual(ours.count, 2, "list rows of the hostile loopback")
        for row in lines.dropFirst() {
            let at = row.index(row.startIndex, offsetBy: linkColumn, limitedBy: row.endIndex).map { row[$0...] } ?? ""
            try expect(at.hasPrefix("usb#") || at.hasPrefix("hid#"), "list row not aligned with its header (link not at column \(linkColumn)): \(row)")
        }
        let escapedSerial = "ser\\u{1b}[31mX\\u{9}1"
        for row in ours {
            try expect(row.hasPrefix("present  usb   1209:0c0f"), "a hostile loopback row: \(row)")
            try expect(row.contains("  " + escapedSerial + "  "), "the serial is not shown escaped (\(escapedSerial)) in \(row)")
        }

        // watch: the arrivals, then the removals, each a fixed form.
        let links = try cliList(["--class", "lab-vendor-bulk"], registry: registry).compactMap { $0["symbolicLink"] as? String }.filter { $0.contains("pid_0c0f") }
        let bulkLink = try links.first.orFail("no lab-vendor-bulk instance of the hostile loopback")
        let (bus, dev) = (try plugged.busnum.orFail("devlab gave no bus"), try plugged.devnum.orFail("devlab gave no devnum"))
        let node = String(format: "/dev/bus/usb/%03d/%03d", bus, dev)
        try expect(arrivals.contains("+ arrival lab-vendor-bulk  \(bulkLink)  \(node)"),
                   "watch's arrival line for \(bulkLink): \(arrivals)")
        try expect(arrivals.allSatisfy { !$0.contains(esc) && $0.hasPrefix("+ arrival ") }, "watch's arrival lines: \(arrivals)")

        // info: labelled lines, the device strings escaped.
        let info = try runCLI(["info", bulkLink] + common)
        try expect(!info.contains(esc) && !info.contains("\t") && !info.contains("\u{7f}"), "info prints raw control characters:\n\(info)")
        let infoLines = info.split(separator: "\n").map(String.init)
        func field(_ name: String) -> String? {
            infoLines.first { $0.hasPrefix(name + " ") }.map { $0.dropFirst(name.count).trimmingCharacters(in: .whitespaces) }
        }
        try expectEqual(field("Symbolic link"), bulkLink, "info's Symbolic link")
        try expectEqual(field("Product"), "tab\\u{9}here\\u{1b}[31m red\\u{7f}", "info's Product, escaped")
        try expectEqual(field("Serial number"), escapedSerial, "info's Serial number, escaped")
        try expectEqual(field("Device node"), node, "info's Device node")
        let valueColumns = Set(infoLines.filter { !$0.hasPrefix(" ") && !$0.hasPrefix("Configuration") }.compactMap { line -> Int? in
            guard let r = line.range(of: "  ") else { return nil }
            let after = line[r.upperBound...]
            return line.distance(from: line.startIndex, to: after.firstIndex { $0 != " " } ?? after.startIndex)
        })
        try expectEqual(valueColumns.count, 1, "info's values start in one column (\(valueColumns))")

        // On a terminal: coloured; NO_COLOR and --no-color: not.
        try expect(try onTerminal(["list"] + common).contains(esc + "[1mSTATE"), "list's header on a terminal is not bold")
        try expect(!(try onTerminal(["list"] + common, environment: ["NO_COLOR=1"])).contains(esc), "NO_COLOR=1: list on a terminal has escape sequences")
        try expect(!(try onTerminal(["list", "--no-color"] + common)).contains(esc), "--no-color: list on a terminal has escape sequences")

        try Devlab.unplug("hs1")
        let removal = try await watcher.next(within: 30, "the hostile loopback's removal") { $0.contains("pid_0c0f") }
        try expect(removal.hasPrefix("- removal ") && !removal.contains("/dev/"), "watch's removal line: \(removal)")
        _ = try await watcher.next(within: 30, "the second removal") { $0.contains("pid_0c0f") }
        try expectEqual(try interruptChild(watcher.process, "watch"), 0, "watch's exit status after SIGINT")
    }

    r.add("consumer: a package outside devif (import Devif alone) lists, watches, does bulk, control and HID I/O") {
        let consumer = Devlab.repo.appendingPathComponent("Tests/Consumer/.build/debug/devif-consumer").path
        try expect(FileManager.default.isExecutableFile(atPath: consumer),
                   "\(consumer) is not built: Lab/test builds it with Scripts/consumer before the VM boots")
        try LabClasses.install()
        try Devlab.run(["create", "cn1", "loopback", "--vid", "1209", "--pid", "0c12", "--serial", "LAB-CONS-1"])
        defer { _ = try? Devlab.run(["remove", "cn1"]) }
        try Devlab.run(["create", "cn2", "hid", "--vid", "1209", "--pid", "0c13", "--serial", "LAB-CONS-2"])
        defer { _ = try? Devlab.run(["remove", "cn2"]) }
        let env = ["DEVIF_CLASSES_PATH=\(LabClasses.folder)", consumer]

        let watcher = try LineReader("/usr/bin/env", env + ["watch", "2", "60"])
        defer { watcher.kill() }
        _ = try await watcher.next(within: 30, "the consumer to start watching") { $0 == "watching" }
        try Devlab.plug("cn1")
        let bulkLink = "usb#vid_1209&pid_0c12#LAB-CONS-1#\(LabClasses.vendorBulk)"
        let deviceLink = "usb#vid_1209&pid_0c12#LAB-CONS-1#\(usbDeviceClass)"
        var seen: Set<String> = []
        for k in 1...2 {
            let line = try await watcher.next(within: 30, "the consumer's arrival \(k) of 2") { $0.hasPrefix("arrival ") }
            seen.insert(String(line.split(separator: " ").last ?? ""))
        }
        try expectEqual(seen, [bulkLink, deviceLink], "the consumer's arrivals")
        try expectEqual(try await watcher.exitStatus(within: 20, "the consumer's watch to exit"), 0, "consumer watch exit status")

        try Devlab.plug("cn2")
        try settleUdev()
        let list = try runProcess("/usr/bin/env", env + ["list"])
        try expectEqual(list.status, 0, "consumer list status (stderr: \(list.stderr))")
        let hidLink = "hid#vid_1209&pid_0c13&mi_00#LAB-CONS-2#\(hidClass)"
        for link in [bulkLink, deviceLink, hidLink] {
            try expect(list.output.contains(" \(link) /dev/"), "consumer list lacks \(link):\n\(list.output)")
        }
        let bulk = try runProcess("/usr/bin/env", env + ["loopback", bulkLink, "5000"], timeout: 60)
        try expectEqual(bulk.output.trimmingCharacters(in: .newlines), "loopback ok 5000 device-descriptor 18",
                        "consumer loopback (stderr: \(bulk.stderr))")
        let echo = try runProcess("/usr/bin/env", env + ["hid-echo", hidLink], timeout: 60)
        try expectEqual(echo.output.trimmingCharacters(in: .newlines), "hid-echo ok 64", "consumer hid-echo (stderr: \(echo.stderr))")
    }
}

// Drives the lab's device toolkit (Lab/guest/devlab) from the suite.
import Foundation

enum Devlab {
    /// The repository root: Lab/test exports DEVIF_REPO; otherwise derived
    /// from this executable's place in .build/<config>/.
    static let repo: URL = {
        if let r = ProcessInfo.processInfo.environment["DEVIF_REPO"] { return URL(fileURLWithPath: r) }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        return exe.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }()

    static var tool: String { repo.appendingPathComponent("Lab/guest/devlab").path }

    /// Runs `devlab ARGS`, returning its stdout; throws with its stderr on failure.
    @discardableResult
    static func run(_ args: [String]) throws -> String {
        // Run directly: its #! line carries the fast interpreter flags.
        let r = try runProcess(tool, args, timeout: 180)
        guard r.status == 0 else {
            throw LabFailure("devlab \(args.joined(separator: " ")) exited \(r.status): "
                + r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return r.output
    }

    /// Runs several devlab commands in one devlab process (one per line), as
    /// close together as the toolkit can: "plugged at once".
    static func batch(_ lines: [String]) throws {
        let r = try runProcess(tool, ["batch", "--stop-on-error"],
                               stdin: Data((lines.joined(separator: "\n") + "\n").utf8), timeout: 300)
        guard r.status == 0 else {
            throw LabFailure("devlab batch exited \(r.status): \(r.stderr) \(r.output.suffix(500))")
        }
    }

    /// `devlab batch` lines that create each gadget (`create NAME` + its
    /// arguments) and plug the k-th on its own controller,
    /// `dummy_udc.(firstController + k)`, so many gadgets go in at once without
    /// sharing a bus (the suite's `devlab init --udcs 32` makes 32), then
    /// wait until the kernel sees them all. Run them with ``batch(_:)``.
    static func onOwnControllers(_ gadgets: [(name: String, create: String)], firstController: Int = 0,
                                 timeout: Double = 120) -> [String] {
        gadgets.map { "create \($0.name) \($0.create)" }
            + gadgets.enumerated().map { k, g in "plug \(g.name) --udc dummy_udc.\(firstController + k)" }
            + ["wait " + gadgets.map(\.name).joined(separator: " ") + " --timeout \(Int(timeout))"]
    }

    /// Waits until the kernel sees every named device (or, with gone, none).
    static func wait(_ names: [String], gone: Bool = false, timeout: Double = 60) throws {
        try run(["wait"] + names + ["--timeout", String(timeout)] + (gone ? ["--gone"] : []))
    }

    /// `devlab plug NAME --wait`: the host-side view of the plugged device.
    @discardableResult
    static func plug(_ name: String, wait: Double = 20) throws -> Plugged {
        let json = try run(["plug", name, "--wait", String(wait)])
        do {
            return try JSONDecoder().decode(Plugged.self, from: Data(json.utf8))
        } catch {
            throw LabFailure("devlab plug \(name) printed unexpected JSON (\(error)): \(json)")
        }
    }

    static func unplug(_ name: String, wait: Double = 20) throws {
        try run(["unplug", name, "--wait", String(wait)])
    }

    struct Plugged: Decodable {
        var name: String
        var busnum: Int?
        var devnum: Int?
        var sysfs: String?
        var port_chain: String?
        var hidraw: [String]?
        var serial: String?
    }
}


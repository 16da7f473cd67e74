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
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)  // its #! line carries the fast interpreter flags
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let watchdog = killAfter(p, seconds: 180)
        // Read before waiting so a chatty child never blocks on a full pipe.
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        watchdog.cancel()
        guard p.terminationStatus == 0 else {
            throw LabFailure("devlab \(args.joined(separator: " ")) exited \(p.terminationStatus): "
                + (String(decoding: e, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        return String(decoding: o, as: UTF8.self)
    }

    /// Runs several devlab commands in one devlab process (one per line), as
    /// close together as the toolkit can: "plugged at once".
    static func batch(_ lines: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = ["batch", "--stop-on-error"]
        let input = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = input
        p.standardOutput = out
        p.standardError = err
        try p.run()
        input.fileHandleForWriting.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        try input.fileHandleForWriting.close()
        let watchdog = killAfter(p, seconds: 300)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        watchdog.cancel()
        guard p.terminationStatus == 0 else {
            throw LabFailure("devlab batch exited \(p.terminationStatus): \(String(decoding: e, as: UTF8.self)) \(String(decoding: o, as: UTF8.self).suffix(500))")
        }
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

/// Kills `process` if it is still running after `seconds`: no child of the
/// suite may hang it. Cancel the returned item once the process has ended.
func killAfter(_ process: Process, seconds: Double) -> DispatchWorkItem {
    let pid = process.processIdentifier
    let item = DispatchWorkItem {
        FileHandle.standardError.write(Data("lab-suite: killing pid \(pid) after \(seconds) s\n".utf8))
        kill(pid, SIGKILL)
    }
    DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: item)
    return item
}

// What the example tools share: options, starting a manager, exit statuses,
// statistics and JSON output. Kept small on purpose: each tool's own file
// shows the devif calls it makes.
import ArgumentParser
import Devif
import Foundation

/// Options every example takes.
public struct ExampleOptions: ParsableArguments {
    @Flag(name: .customLong("json"), help: "Print one JSON object (a summary, or one per line for streams) instead of text.")
    public var json = false

    @Option(name: .customLong("classes-dir"),
            help: ArgumentHelp("A folder of class files (*.conf) to use instead of the system and user folders; repeatable.", valueName: "dir"))
    public var classFolders: [String] = []

    @Option(name: .customLong("registry"), help: ArgumentHelp("The instance registry file (as devif-usb).", valueName: "path"))
    public var registryPath: String?

    public init() {}
}

/// Exit statuses (sysexits.h), the same as devif-usb's.
public enum ExampleExit {
    public static let verificationFailed = ExitCode(1)
    public static let usage = ExitCode(64)
    public static let unknownLink = ExitCode(65)
    /// The device was removed (or is not plugged in).
    public static let unavailable = ExitCode(69)
    public static let software = ExitCode(70)
    public static let ioError = ExitCode(74)
    public static let noPermission = ExitCode(77)
}

/// Prints `message` as one line on stderr, prefixed with the tool's name.
public func complain(_ tool: String, _ message: String) {
    FileHandle.standardError.write(Data("\(tool): \(message)\n".utf8))
}

/// Reports a handle error in one line and returns the exit status for it:
/// 69 when the device was removed or is absent (the line names the link).
public func exitStatus(_ tool: String, _ error: HandleError) -> ExitCode {
    if error == .deviceRemoved {
        complain(tool, "\(error.link): the device was removed")
        return ExampleExit.unavailable
    }
    complain(tool, error.description)
    switch error {
    case .notPresent: return ExampleExit.unavailable
    case .unknownLink, .wrongKind: return ExampleExit.unknownLink
    case .permissionDenied: return ExampleExit.noPermission
    case .invalidArgument: return ExampleExit.usage
    default: return ExampleExit.ioError
    }
}

/// A started manager whose sources have listed the present devices.
public func startManager(_ tool: String, _ options: ExampleOptions) async throws -> DeviceManager {
    var o = DeviceManager.Options()
    o.registryPath = options.registryPath
    o.classFolders = options.classFolders.isEmpty ? nil : options.classFolders
    let manager: DeviceManager
    do { manager = try DeviceManager(options: o) } catch {
        complain(tool, "\(error)")
        throw ExampleExit.unavailable
    }
    manager.start()
    if !(await manager.waitUntilEnumerated(timeout: .seconds(15))) {
        complain(tool, "the device sources did not finish listing devices within 15 s")
    }
    return manager
}

/// Order statistics of a sample (nearest rank).
public struct Percentiles: Codable, Sendable {
    public let count: Int
    public let median: Double
    public let p99: Double
    public let min: Double
    public let max: Double

    public init(_ values: [Double]) {
        let s = values.sorted()
        count = s.count
        func rank(_ p: Double) -> Double {
            s.isEmpty ? 0 : s[Swift.min(s.count - 1, Swift.max(0, Int((p * Double(s.count)).rounded(.up)) - 1))]
        }
        median = rank(0.5)
        p99 = rank(0.99)
        min = s.first ?? 0
        max = s.last ?? 0
    }
}

/// Writes `line` and a newline to stdout at once (unbuffered: a reader of
/// a pipe sees each line as it happens).
public func printLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Prints `value` as one line of JSON on stdout.
public func printJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    if let data = try? encoder.encode(value), let text = String(data: data, encoding: .utf8) {
        printLine(text)
    }
}

/// Microseconds in a Duration.
public func microseconds(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12
}

/// Seconds in a Duration.
public func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// A pseudo-random byte stream (SplitMix64): the same data for the same seed.
public struct ByteGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count + 8)
        while out.count < count {
            withUnsafeBytes(of: next().littleEndian) { out.append(contentsOf: $0) }
        }
        return Array(out.prefix(count))
    }
}

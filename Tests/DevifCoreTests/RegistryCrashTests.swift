import Foundation
import SeededRandom
import Testing
@testable import DevifCore
import DevifRegistrySQLite


private struct CrashTestFailure: Error, CustomStringConvertible {
    var description: String
}

/// Reads a child's stdout line by line, waiting at most `timeout` for each line.
private final class LineReader {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var atEnd = false

    init(_ handle: FileHandle) { fd = handle.fileDescriptor }

    /// The next line, or nil at end of file.
    func next(timeout: Duration = .seconds(30), what: String) throws -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            if atEnd {
                guard !buffer.isEmpty else { return nil }
                defer { buffer.removeAll() }
                return String(decoding: buffer, as: UTF8.self)
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                throw CrashTestFailure(description: "no output from \(what) within \(timeout)")
            }
            var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(min(left.components.seconds * 1000 + 1, 60_000))
            let ready = poll(&pollFD, 1, milliseconds)
            if ready < 0 && errno == EINTR { continue }
            guard ready >= 0 else { throw CrashTestFailure(description: "poll failed: errno \(errno)") }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw CrashTestFailure(description: "read failed: errno \(errno)") }
            if count == 0 { atEnd = true } else { buffer.append(contentsOf: chunk[..<count]) }
        }
    }
}

/// A running `registry-crash-writer`.
private struct Writer {
    let process: Process
    let lines: LineReader
    let errors: Pipe
    let name: String

    /// The crash writer, built next to the test bundle (a dependency of the test target).
    static func executable() throws -> URL {
        let starts = [URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath(),
                      URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()]
        for start in starts {
            var folder = start.deletingLastPathComponent()
            for _ in 0..<4 {
                let candidate = folder.appendingPathComponent("registry-crash-writer")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                folder = folder.deletingLastPathComponent()
            }
        }
        throw CrashTestFailure(description:
            "registry-crash-writer not found near \(starts.map(\.path)); build it with `swift build --product registry-crash-writer`")
    }

    static func start(database: String, arguments: [String], name: String) throws -> Writer {
        let process = Process()
        process.executableURL = try executable()
        process.arguments = [database] + arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return Writer(process: process, lines: LineReader(output.fileHandleForReading), errors: errors, name: name)
    }

    /// The next committed sequence number the writer printed, or nil when its output ended.
    func nextSequence() throws -> RegistrySequence? {
        guard let line = try lines.next(what: name) else { return nil }
        guard let seq = RegistrySequence(line) else {
            throw CrashTestFailure(description: "\(name) printed \(line.debugDescription), not a sequence number")
        }
        return seq
    }

    /// Every number left in the output, to end of file (the writer has exited or been killed).
    func remainingSequences() throws -> [RegistrySequence] {
        var all: [RegistrySequence] = []
        while let seq = try nextSequence() { all.append(seq) }
        return all
    }

    func finish() -> (reason: Process.TerminationReason, status: Int32, stderr: String) {
        process.waitUntilExit()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (process.terminationReason, process.terminationStatus, text)
    }
}

@Suite(.serialized) struct RegistryCrashTests {
    /// Kills the writer with SIGKILL after a random number of committed lines
    /// (0 kills it while it opens the file), over and over on one file, and
    /// checks each time that the file opens and holds every change the writer
    /// reported as committed, numbered 1...n without gaps.
    /// DEVIF_CRASH_ITERATIONS (default 30) and DEVIF_CRASH_SEED set the run.
    @Test func aKilledWriterLosesNoCommittedChange() throws {
        let environment = ProcessInfo.processInfo.environment
        let iterations = environment["DEVIF_CRASH_ITERATIONS"].flatMap { Int($0) } ?? 30
        let seed = environment["DEVIF_CRASH_SEED"].flatMap { UInt64($0) } ?? 0x5EED_DE71F
        var random = SplitMix64(seed: seed)
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let database = folder.file("registry.sqlite")
        var previousLast: RegistrySequence = 0
        var totalPrinted = 0
        let started = ContinuousClock.now

        for iteration in 0..<iterations {
            let context = "iteration \(iteration) (seed \(seed))"
            // A quarter of the kills land while the writer opens the file or
            // makes its first commits (schema creation, WAL recovery after the
            // previous kill); the rest anywhere in its first 40 commits.
            let killAfter = Bool.random(using: &random) && Bool.random(using: &random)
                ? Int.random(in: 0...2, using: &random) : Int.random(in: 0...40, using: &random)
            let writer = try Writer.start(database: database, arguments: ["--prefix", "crash\(iteration)"],
                                          name: "writer in \(context)")
            var printed: [RegistrySequence] = []
            while printed.count < killAfter, let seq = try writer.nextSequence() { printed.append(seq) }
            kill(writer.process.processIdentifier, SIGKILL)
            // Lines already in the pipe were committed too.
            printed += try writer.remainingSequences()
            let exit = writer.finish()
            try #require(exit.reason == .uncaughtSignal && exit.status == SIGKILL,
                         "\(context): the writer ended on its own (status \(exit.status)): \(exit.stderr)")
            totalPrinted += printed.count

            let store = try SQLiteRegistryStore(path: database)
            let registry = try InstanceRegistry(store: store)
            let logged = try registry.changes(since: 0).map(\.seq)
            let expected = logged.isEmpty ? [] : Array(1...RegistrySequence(logged.count))
            try #require(logged == expected, "\(context): the change log is not 1...n: \(logged.suffix(10))")
            let missing = Set(printed).subtracting(logged)
            try #require(missing.isEmpty, "\(context): committed but lost: \(missing.sorted())")
            #expect(printed == printed.sorted() && printed.allSatisfy { $0 > previousLast },
                    "\(context): numbers did not keep increasing across runs")
            #expect(registry.lastSequence == (logged.last ?? 0))
            // The writer alternates plug and unplug: at most its last instance is left present.
            let leftPresent = registry.present().filter { $0.serialNumber?.hasPrefix("crash\(iteration)-") == true }
            #expect(leftPresent.count <= 1, "\(context): \(leftPresent.count) instances left present")
            previousLast = registry.lastSequence
        }
        let elapsed = ContinuousClock.now - started
        print("registry crash test: \(iterations) kills, \(totalPrinted) reported commits, \(previousLast) logged changes, \(elapsed)")
        #expect(previousLast >= RegistrySequence(totalPrinted))
    }

    /// Two writer processes race to create and then write one new file; every
    /// number is used exactly once and none is lost.
    @Test func twoWriterProcessesNeverShareOrSkipANumber() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let database = folder.file("registry.sqlite")
        let count = 400
        let writers = try ["one", "two"].map {
            try Writer.start(database: database, arguments: ["--count", String(count), "--prefix", $0],
                             name: "writer \($0)")
        }
        var printed: [[RegistrySequence]] = []
        for writer in writers { printed.append(try writer.remainingSequences()) }
        for (writer, numbers) in zip(writers, printed) {
            let exit = writer.finish()
            #expect(exit.reason == .exit && exit.status == 0, "\(writer.name) failed: \(exit.stderr)")
            #expect(numbers.count == count, "\(writer.name) reported \(numbers.count) commits")
            #expect(numbers == numbers.sorted() && Set(numbers).count == numbers.count,
                    "\(writer.name)'s own numbers must strictly increase")
        }
        let all = printed.joined().sorted()
        #expect(all == Array(1...RegistrySequence(2 * count)), "no duplicate, no gap")
        // A failed writer must fail the test, not crash the test process.
        let first = try printed.map { try #require($0.first, "a writer reported no commit") }
        let overlap = printed[0].contains { $0 > first[1] } && printed[1].contains { $0 > first[0] }
        print("registry two-writer test: writers interleaved: \(overlap); first numbers \(first[0]) and \(first[1])")

        let registry = try InstanceRegistry(store: SQLiteRegistryStore(path: database))
        let changes = try registry.changes(since: 0)
        #expect(changes.map(\.seq) == Array(1...RegistrySequence(2 * count)))
        #expect(registry.all().count == count, "each writer plugged and unplugged count/2 instances")
        #expect(registry.present().isEmpty)
        for prefix in ["one", "two"] {
            #expect(changes.filter { $0.record.serialNumber?.hasPrefix(prefix + "-") == true }.count == count)
        }
    }
}

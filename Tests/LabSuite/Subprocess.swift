// The suite's one way to run a child process: output captured, a bounded
// run time (a hung child is killed, so no scenario can hang the suite).
import Foundation

struct ProcessResult {
    var status: Int32
    var stdout: Data
    var stderr: String
    var output: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs `path args`, feeding `stdin` if given, with `environment` added to
/// this process's; kills it after `timeout` seconds.
func runProcess(_ path: String, _ args: [String], stdin: Data? = nil, environment: [String: String] = [:],
                timeout: Double = 120) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    if !environment.isEmpty {
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let input = stdin.map { _ in Pipe() }
    if let input { p.standardInput = input }
    try p.run()
    if let input, let stdin {
        input.fileHandleForWriting.write(stdin)
        try input.fileHandleForWriting.close()
    }
    let watchdog = killAfter(p, seconds: timeout)
    // Read before waiting so a chatty child never blocks on a full pipe.
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    watchdog.cancel()
    return ProcessResult(status: p.terminationStatus, stdout: o, stderr: String(decoding: e, as: UTF8.self))
}

/// Runs a tool for its exit status only.
func runTool(_ path: String, _ args: [String]) throws -> Int32 {
    try runProcess(path, args).status
}

/// Kills `process` if it is still running after `seconds`. Cancel the
/// returned item once the process has ended.
func killAfter(_ process: Process, seconds: Double) -> DispatchWorkItem {
    let pid = process.processIdentifier
    let item = DispatchWorkItem {
        FileHandle.standardError.write(Data("lab-suite: killing pid \(pid) after \(seconds) s\n".utf8))
        kill(pid, SIGKILL)
    }
    DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: item)
    return item
}

/// The devif-usb built next to this suite.
var devifUSBPath: String { Devlab.repo.appendingPathComponent(".build/debug/devif-usb").path }

/// Reads `handle` on a thread of its own until end of file and calls `body`
/// with each complete line (without its newline).
func forEachLine(of handle: FileHandle, _ body: @escaping @Sendable (Data) -> Void) {
    Thread.detachNewThread {
        var buffer = Data()
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { return }
            buffer.append(chunk)
            while let nl = buffer.firstIndex(of: 10) {
                body(Data(buffer[buffer.startIndex..<nl]))
                buffer = Data(buffer[(nl + 1)...])
            }
        }
    }
}

/// Sends SIGINT to `process` and returns its exit status, waiting at most
/// 10 s (then fails naming `what`).
func interruptChild(_ process: Process, _ what: String) throws -> Int32 {
    process.interrupt()
    let deadline = Date().addingTimeInterval(10)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    guard !process.isRunning else { throw LabFailure("\(what) still running 10 s after SIGINT") }
    return process.terminationStatus
}

// A small test harness for scenarios that run inside the lab VM against real
// kernel USB. Not XCTest: lab scenarios share one boot, run in a fixed order,
// drive devices through Lab/guest/devlab, and end with the plain line
// "N passed, N failed" that Lab/test and CI read.
import Foundation
import Synchronization

struct LabFailure: Error, CustomStringConvertible {
    let description: String
    init(_ message: String, file: StaticString = #fileID, line: UInt = #line) {
        description = "\(message) (\(file):\(line))"
    }
}

struct LabTest: Sendable {
    let name: String
    let body: @Sendable () async throws -> Void
}

/// Fails the running test with `message` unless `condition` holds.
func expect(_ condition: Bool, _ message: @autoclosure () -> String,
            file: StaticString = #fileID, line: UInt = #line) throws {
    if !condition { throw LabFailure(message(), file: file, line: line) }
}

func expectEqual<T: Equatable>(_ actual: T, _ expected: T, _ what: String,
                               file: StaticString = #fileID, line: UInt = #line) throws {
    if actual != expected {
        throw LabFailure("\(what): expected \(expected), got \(actual)", file: file, line: line)
    }
}

/// Runs `body`, failing with a message naming `what` if it takes longer than
/// `seconds`. Every wait in the suite is bounded by one of these.
///
/// The deadline is a dispatch timer that is cancelled when `body` ends, not
/// a sleeping task: a cancelled `Task.sleep` keeps its task and timer until
/// the sleep's own deadline (about 0.6 KB each), so a test that waits for
/// 20 events a second under 60 s deadlines held some 700 KB of finished
/// waits, which the leak test took for growth of the process under test.
func withDeadline<T: Sendable>(_ seconds: Double, _ what: String,
                               _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let work = Task { try await body() }
    let expired = Atomic<Bool>(false)
    let timer = DispatchSource.makeTimerSource(queue: .global())
    timer.setEventHandler {
        expired.store(true, ordering: .releasing)
        work.cancel()
    }
    timer.schedule(deadline: .now() + seconds)
    timer.resume()
    defer { timer.cancel() }
    do {
        let value = try await withTaskCancellationHandler { try await work.value } onCancel: { work.cancel() }
        return value
    } catch where expired.load(ordering: .acquiring) {
        throw LabFailure("timed out after \(seconds) s waiting for \(what)")
    }
}

/// Waits at most `seconds` for `body`, which need not end on cancellation
/// (a stream's or reader's `finished()`): it runs in a task of its own and
/// is left to end when it will. `withDeadline` would wait for it.
func within<T: Sendable>(_ seconds: Double, _ what: String,
                         _ body: @escaping @Sendable () async -> T) async throws -> T {
    let result = Inbox<T>()
    Task { result.post(await body()) }
    return try await result.next(within: seconds, what)
}

/// An unbounded, thread-safe inbox that C callbacks and event streams post
/// into and one test task takes from (always with a deadline). Taking with a
/// predicate takes the oldest matching element and leaves the others queued:
/// events of two devices may interleave in either order, and waiting for one
/// must not throw the other's away.
final class Inbox<Element: Sendable>: Sendable {
    private struct Waiter {
        let predicate: @Sendable (Element) -> Bool
        let continuation: CheckedContinuation<Element?, Never>
    }
    private struct State {
        var buffer: [Element] = []
        var waiter: Waiter?
    }
    private let state = Mutex(State())

    init() {}

    func post(_ element: Element) {
        let waiter = state.withLock { s -> Waiter? in
            if let w = s.waiter, w.predicate(element) { s.waiter = nil; return w }
            s.buffer.append(element)
            return nil
        }
        waiter?.continuation.resume(returning: element)
    }

    private func take(where predicate: @escaping @Sendable (Element) -> Bool) async -> Element? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Element?, Never>) in
                let ready = state.withLock { s -> Element?? in
                    if let k = s.buffer.firstIndex(where: predicate) { return .some(s.buffer.remove(at: k)) }
                    if Task.isCancelled { return .some(nil) }
                    s.waiter = Waiter(predicate: predicate, continuation: c)
                    return .none
                }
                if let ready { c.resume(returning: ready) }
            }
        } onCancel: {
            let w = state.withLock { s in defer { s.waiter = nil }; return s.waiter }
            w?.continuation.resume(returning: nil)
        }
    }

    /// Whether nothing is queued.
    var isEmpty: Bool { state.withLock { $0.buffer.isEmpty } }

    /// The oldest element that satisfies `predicate`, within `seconds`.
    func next(within seconds: Double, _ what: String,
              where predicate: @escaping @Sendable (Element) -> Bool = { _ in true }) async throws -> Element {
        try await withDeadline(seconds, what) { [self] in
            guard let element = await take(where: predicate) else { throw CancellationError() }
            return element
        }
    }
}

/// Appends a timestamped line to $LAB_RESULTS/progress.txt: when a scenario
/// hangs in the VM, this shows the last step it reached.
func progress(_ line: String) {
    guard let dir = ProcessInfo.processInfo.environment["LAB_RESULTS"] else { return }
    let path = dir + "/progress.txt"
    let text = String(format: "%.3f ", Date().timeIntervalSince1970) + line + "\n"
    if let h = FileHandle(forWritingAtPath: path) {
        h.seekToEndOfFile()
        h.write(Data(text.utf8))
        try? h.close()
    } else {
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    }
}

struct LabRunner {
    var tests: [LabTest] = []
    mutating func add(_ name: String, _ body: @escaping @Sendable () async throws -> Void) {
        tests.append(LabTest(name: name, body: body))
    }

    /// Runs the tests in order (or those whose name contains `filter`, or
    /// one of its `|`-separated parts), prints one line each, and returns
    /// (passed, failed).
    func run(filter: String?, log: (String) -> Void) async -> (Int, Int) {
        var passed = 0, failed = 0
        let parts = filter.map { $0.split(separator: "|").map(String.init) }
        for test in tests where parts.map({ $0.contains { test.name.contains($0) } }) ?? true {
            let start = ContinuousClock.now
            progress("begin \(test.name)")
            do {
                // A bound on the whole test, so one stuck scenario fails alone.
                try await withDeadline(900, "the test to finish") { try await test.body() }
                passed += 1
                log("PASS \(test.name) (\(ms(since: start)) ms)")
            } catch {
                failed += 1
                log("FAIL \(test.name) (\(ms(since: start)) ms): \(error)")
            }
            // Leave no device behind for the next test.
            _ = try? Devlab.run(["reset"])
        }
        return (passed, failed)
    }
}

func ms(since start: ContinuousClock.Instant) -> Int {
    let d = ContinuousClock.now - start
    return Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
}

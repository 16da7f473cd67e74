import Dispatch
import Foundation
import Synchronization
import Testing
@testable import DevifCore

/// A resource that knows whether it has been released, so a test can catch a
/// use after release.
private final class FakeDevice: Sendable {
    let id: Int
    let device: String
    let released = Atomic<Int>(0)
    init(id: Int, device: String) {
        self.id = id
        self.device = device
    }
}

/// A lock TSan can see through (pthread mutex). `Synchronization.Mutex` on Linux
/// hands ownership over in the kernel (PI futex) under contention, which TSan
/// does not observe, so contended test state uses this instead.
private final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// Counts releases, so tests can check "exactly once".
private final class ReleaseLog: Sendable {
    let count = Atomic<Int>(0)
    func release(_ d: FakeDevice) {
        let before = d.released.add(1, ordering: .relaxed).oldValue
        precondition(before == 0, "resource \(d.id) released twice")
        count.add(1, ordering: .relaxed)
    }
}

@Suite("HandleTable")
struct HandleTableTests {
    private func makeTable(capacity: Int = 16) -> (HandleTable<FakeDevice>, ReleaseLog) {
        let log = ReleaseLog()
        return (HandleTable<FakeDevice>(capacity: capacity, onRelease: { log.release($0) }), log)
    }

    @Test func openLookupCloseAndSecondCloseIsAClearError() throws {
        let (table, log) = makeTable()
        let dev = FakeDevice(id: 1, device: "A")
        let h = try table.open(dev)
        #expect(h.generation != 0)
        #expect(try table.withResource(h) { $0.id } == 1)
        try table.close(h)
        #expect(log.count.load(ordering: .relaxed) == 1)
        #expect(dev.released.load(ordering: .relaxed) == 1)
        #expect(throws: HandleTableError.staleHandle(h)) { try table.withResource(h) { _ in } }
        #expect(throws: HandleTableError.staleHandle(h)) { try table.close(h) }
        #expect(log.count.load(ordering: .relaxed) == 1, "a second close releases nothing")
    }

    @Test func reusedSlotMakesOldHandleStale() throws {
        let (table, _) = makeTable(capacity: 1)
        let h1 = try table.open(FakeDevice(id: 1, device: "A"))
        try table.close(h1)
        let h2 = try table.open(FakeDevice(id: 2, device: "A"))
        #expect(h2.index == h1.index && h2.generation != h1.generation)
        #expect(throws: HandleTableError.staleHandle(h1)) { try table.withResource(h1) { _ in } }
        #expect(throws: HandleTableError.staleHandle(h1)) { try table.close(h1) }
        #expect(try table.withResource(h2) { $0.id } == 2)
    }

    @Test func handlesTheTableNeverIssuedAreStale() {
        let (table, _) = makeTable(capacity: 4)
        for h in [Handle(index: 99, generation: 1), Handle(index: 0, generation: 0), Handle(index: 0, generation: 1)] {
            #expect(throws: HandleTableError.staleHandle(h)) { try table.withResource(h) { _ in } }
        }
    }

    @Test func fullTableThrowsTableFull() throws {
        let (table, _) = makeTable(capacity: 2)
        let a = try table.open(FakeDevice(id: 1, device: "A"))
        _ = try table.open(FakeDevice(id: 2, device: "A"))
        #expect(throws: HandleTableError.tableFull(capacity: 2)) { try table.open(FakeDevice(id: 3, device: "A")) }
        try table.close(a)
        _ = try table.open(FakeDevice(id: 3, device: "A"))
    }

    @Test func closeWhileInUseKeepsTheResourceUntilTheUseEnds() throws {
        let (table, log) = makeTable()
        let dev = FakeDevice(id: 1, device: "A")
        let h = try table.open(dev)
        try table.withResource(h) { r in
            try table.close(h)   // e.g. from another thread; here, from inside the use
            #expect(throws: HandleTableError.staleHandle(h)) { try table.withResource(h) { _ in } }
            #expect(r.released.load(ordering: .relaxed) == 0, "still alive while in use")
            #expect(log.count.load(ordering: .relaxed) == 0)
        }
        #expect(dev.released.load(ordering: .relaxed) == 1, "released when the last use ended")
        #expect(table.openHandles().isEmpty)
    }

    @Test func asyncUseKeepsTheResourceAcrossSuspension() async throws {
        let (table, log) = makeTable()
        let h = try table.open(FakeDevice(id: 1, device: "A"))
        let entered = DispatchSemaphore(value: 0)
        let proceed = DispatchSemaphore(value: 0)
        let user = Task {
            try await table.withResource(h) { r async -> Int in
                entered.signal()
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    Thread { proceed.wait(); c.resume() }.start()
                }
                return r.released.load(ordering: .relaxed)
            }
        }
        try await FanOutTestSupport.wait(entered, seconds: 10, "the async use to start")
        try table.close(h)
        #expect(log.count.load(ordering: .relaxed) == 0)
        proceed.signal()
        #expect(try await user.value == 0, "not released during the async use")
        #expect(log.count.load(ordering: .relaxed) == 1)
    }

    @Test func markRemovedFailsFastButHandlesStayClosable() throws {
        let (table, log) = makeTable()
        let a = try (0..<3).map { try table.open(FakeDevice(id: $0, device: "A")) }
        let b = try table.open(FakeDevice(id: 9, device: "B"))
        let marked = table.markRemoved { $0.device == "A" }
        #expect(Set(marked) == Set(a))
        #expect(table.markRemoved { $0.device == "A" }.isEmpty, "already marked")
        for h in a {
            #expect(throws: HandleTableError.deviceRemoved(h)) { try table.withResource(h) { _ in } }
        }
        #expect(try table.withResource(b) { $0.id } == 9)
        let listed = table.openHandles()
        #expect(listed.count == 4)
        #expect(Set(listed.filter(\.isRemoved).map(\.handle)) == Set(a))
        try table.close(a[0])
        #expect(log.count.load(ordering: .relaxed) == 1)
        #expect(table.openHandles().count == 3)
        // The device comes back: opening it again gives a working handle.
        let again = try table.open(FakeDevice(id: 10, device: "A"))
        #expect(try table.withResource(again) { $0.id } == 10)
    }

    @Test func markRemovedDoesNotInterruptAUseInProgress() throws {
        let (table, _) = makeTable()
        let h = try table.open(FakeDevice(id: 1, device: "A"))
        let id = try table.withResource(h) { r in
            #expect(table.markRemoved { $0.device == "A" } == [h])
            #expect(throws: HandleTableError.deviceRemoved(h)) { try table.withResource(h) { _ in } }
            return r.id
        }
        #expect(id == 1)
        try table.close(h)
    }

    @Test func deallocatingTheTableReleasesWhatIsOpen() throws {
        let log = ReleaseLog()
        do {
            let table = HandleTable<FakeDevice>(capacity: 4, onRelease: { log.release($0) })
            _ = try table.open(FakeDevice(id: 1, device: "A"))
            let h = try table.open(FakeDevice(id: 2, device: "A"))
            try table.close(h)
            #expect(log.count.load(ordering: .relaxed) == 1)
        }
        #expect(log.count.load(ordering: .relaxed) == 2)
    }

    @Test func errorMessagesSayWhatToDo() {
        let h = Handle(index: 3, generation: 7)
        #expect(HandleTableError.staleHandle(h).description.contains("3.7"))
        #expect(HandleTableError.deviceRemoved(h).description.contains("open the device again"))
        #expect(HandleTableError.tableFull(capacity: 4).description.contains("4"))
    }

    /// Threads open, close, look up and mark removed concurrently. Every lookup
    /// either fails cleanly or reaches exactly the resource its handle was issued
    /// for, never a released one; every resource is released exactly once.
    @Test(.timeLimit(.minutes(1)))
    func concurrentChurn() async throws {
        let underTSan = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil
        let opsPerThread = underTSan ? 10_000 : 50_000
        let threads = 4
        let (table, log) = makeTable(capacity: 32)
        // Handles published for other threads to use, with the id they were issued for.
        let shared = Locked<[Int: (Handle, Int)]>([:])
        let opened = Atomic<Int>(0)
        let problems = Locked<[String]>([])
        let done = DispatchSemaphore(value: 0)
        let nextId = Atomic<Int>(0)
        let reached = Atomic<Int>(0), stale = Atomic<Int>(0), removed = Atomic<Int>(0)
        // Recently closed handles: looking them up must always fail as stale.
        let closed = Locked<[Handle]>([])
        @Sendable func closeAndRemember(_ h: Handle) {
            if (try? table.close(h)) != nil {
                closed.withLock { if $0.count < 64 { $0.append(h) } else { $0[Int.random(in: 0..<64)] = h } }
            }
        }

        for t in 0..<threads {
            Thread {
                var rng = SystemRandomNumberGenerator()
                for _ in 0..<opsPerThread {
                    let key = Int.random(in: 0..<48, using: &rng)
                    switch Int.random(in: 0..<10, using: &rng) {
                    case 0...2:
                        let id = nextId.add(1, ordering: .relaxed).newValue
                        let device = FakeDevice(id: id, device: id % 2 == 0 ? "even" : "odd")
                        if let h = try? table.open(device) {
                            opened.add(1, ordering: .relaxed)
                            let old = shared.withLock { $0.updateValue((h, id), forKey: key) }
                            if let (oldHandle, _) = old { closeAndRemember(oldHandle) }
                        }
                    case 3...4:
                        if let (h, _) = shared.withLock({ $0.removeValue(forKey: key) }) {
                            closeAndRemember(h)
                        }
                    case 5:
                        table.markRemoved { $0.id % 7 == t }
                    case 6:
                        guard let h = closed.withLock({ $0.randomElement() }) else { continue }
                        do {
                            try table.withResource(h) { r in
                                problems.withLock { $0.append("closed handle \(h) reached resource \(r.id)") }
                            }
                        } catch HandleTableError.staleHandle(let s) where s == h {
                            stale.add(1, ordering: .relaxed)
                        } catch {
                            problems.withLock { $0.append("closed handle \(h): \(error), want staleHandle") }
                        }
                    default:
                        guard let (h, id) = shared.withLock({ $0[key] }) else { continue }
                        do {
                            try table.withResource(h) { r in
                                reached.add(1, ordering: .relaxed)
                                // Linger sometimes, so closes land while the resource is in use.
                                if r.id % 8 == 0 { sched_yield() }
                                if r.id != id || r.released.load(ordering: .relaxed) != 0 {
                                    problems.withLock { $0.append("handle \(h) reached \(r.id) (want \(id)), released \(r.released.load(ordering: .relaxed))") }
                                }
                            }
                        } catch let e as HandleTableError {
                            switch e {
                            case .staleHandle(let s), .deviceRemoved(let s):
                                if case .staleHandle = e { stale.add(1, ordering: .relaxed) } else { removed.add(1, ordering: .relaxed) }
                                if s != h { problems.withLock { $0.append("error names \(s), not \(h)") } }
                            case .tableFull:
                                problems.withLock { $0.append("tableFull from a lookup") }
                            }
                        } catch {
                            problems.withLock { $0.append("unexpected \(error)") }
                        }
                    }
                }
                done.signal()
            }.start()
        }
        for _ in 0..<threads {
            try await FanOutTestSupport.wait(done, seconds: 50, "a churn thread to finish")
        }
        #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { Array($0.prefix(5)) })")
        // Close what is left; then every opened resource has been released exactly once.
        for (h, _) in shared.withLock({ Array($0.values) }) { try? table.close(h) }
        #expect(table.openHandles().isEmpty)
        #expect(log.count.load(ordering: .relaxed) == opened.load(ordering: .relaxed))
        #expect(opened.load(ordering: .relaxed) > 0)
        #expect(reached.load(ordering: .relaxed) > 0 && stale.load(ordering: .relaxed) > 0
                && removed.load(ordering: .relaxed) > 0,
                "every outcome exercised: \(reached.load(ordering: .relaxed)) reached, \(stale.load(ordering: .relaxed)) stale, \(removed.load(ordering: .relaxed)) removed")
    }
}

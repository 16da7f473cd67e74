// The USB source's assembly threads: made while devices are being made ready
// at once, up to the limit; a device's hand-over (which may apply its
// arrival in the idle pipeline) is not assembly and makes no thread.
@testable import DevifUSB
import Dispatch
import Synchronization
import Testing

@Suite("Assembly workers")
struct AssemblyWorkersTests {
    @Test("assemblies that wait at once get a thread each, up to the limit; the rest wait their turn")
    func growsWithConcurrentAssembliesUpToTheLimit() {
        let workers = AssemblyWorkers(limit: 3, ready: 1)
        defer { workers.stop() }
        let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        for _ in 0..<4 {
            #expect(workers.submit {
                started.signal()
                release.wait()
                return { done.signal() }
            })
        }
        for _ in 0..<3 { started.wait() }
        #expect(workers.threadCount == 3)
        #expect(started.wait(timeout: .now() + .milliseconds(200)) == .timedOut, "a fourth assembly ran beyond the limit")
        for _ in 0..<4 { release.signal() }
        for _ in 0..<4 { done.wait() }
        #expect(workers.threadCount == 3)
    }

    @Test("a job counts as finished before its hand-over: a device that comes while another's arrival is being applied makes no thread")
    func theHandOverIsNotAssembly() {
        let workers = AssemblyWorkers(limit: 4, ready: 1)
        defer { workers.stop() }
        let delivering = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        let order = Mutex<[String]>([])
        #expect(workers.submit {
            return {
                delivering.signal()
                release.wait()
                order.withLock { $0.append("first delivered") }
                done.signal()
            }
        })
        delivering.wait()
        #expect(workers.submit {
            order.withLock { $0.append("second assembled") }
            return { done.signal() }
        })
        #expect(workers.threadCount == 1, "the second device made a thread while the first was only being handed over")
        release.signal()
        done.wait(); done.wait()
        #expect(order.withLock { $0 } == ["first delivered", "second assembled"])
        #expect(workers.threadCount == 1)
    }
}

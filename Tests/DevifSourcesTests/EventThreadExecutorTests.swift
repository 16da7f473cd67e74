// Tasks that prefer the completion executor run on the handles' libusb
// event thread, wake it when it idles, and never starve it.
import DevifCore
@testable import DevifUSB
import Dispatch
import Glibc
import Synchronization
import Testing

// Serialized: tests running at once would keep the thread busy, and the
// idle case would prove nothing.
@Suite(.serialized) struct EventThreadExecutorTests {
    @Test(.timeLimit(.minutes(1))) func aTaskThatPrefersItRunsOnTheIdleEventThread() async throws {
        let context = try USBContext.shared()
        // The thread about to block idle (after its last look for work):
        // only the enqueue's wake-up can make it run the next job.
        let idle = DispatchSemaphore(value: 0)
        context.beforeIdle.set { idle.signal() }
        defer { context.beforeIdle.set(nil) }
        for round in 0..<3 {
            _ = await Task(executorPreference: EventThreadExecutor.shared) { 0 }.value
            // Blocks this test's thread until the event thread goes idle again.
            #expect(idle.wait(timeout: .now() + .seconds(10)) == .success, "round \(round): the thread never went idle")
            let (name, onEventThread) = await Task(executorPreference: EventThreadExecutor.shared) {
                (currentThreadName(), context.isEventThread)
            }.value
            #expect(name == "devif-usb-io")
            #expect(onEventThread)
            _ = idle.wait(timeout: .now() + .seconds(10))  // the idle after that job
        }
    }

    @Test func itStaysOnTheEventThreadAcrossSuspensions() async throws {
        _ = try USBContext.shared()
        let names = await Task(executorPreference: EventThreadExecutor.shared) {
            var seen: Set<String> = []
            for _ in 0..<200 {
                await Task.yield()
                seen.insert(currentThreadName())
            }
            return seen
        }.value
        #expect(names == ["devif-usb-io"])
    }

    @Test func tasksFromManyThreadsAllRunAndNoneIsLost() async throws {
        _ = try USBContext.shared()
        let ran = Counter()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<64 {
                group.addTask {
                    // Enqueued from the global executor's threads, racing each other.
                    await Task(executorPreference: EventThreadExecutor.shared) {
                        for _ in 0..<20 { await Task.yield() }
                        ran.value.add(1, ordering: .relaxed)
                    }.value
                }
            }
        }
        #expect(ran.value.load(ordering: .relaxed) == 64)
    }

    @Test func aYieldingLoopDoesNotStarveAnotherTask() async throws {
        _ = try USBContext.shared()
        let stop = Flag()
        // A task that would spin forever if jobs it queues ran in the same batch.
        let spinner = Task(executorPreference: EventThreadExecutor.shared) {
            var rounds = 0
            while !stop.value.load(ordering: .relaxed) {
                await Task.yield()
                rounds += 1
            }
            return rounds
        }
        let other = await Task(executorPreference: EventThreadExecutor.shared) { currentThreadName() }.value
        stop.value.store(true, ordering: .relaxed)
        #expect(other == "devif-usb-io")
        #expect(await spinner.value > 0)
    }
}

// Tasks that prefer the completion executor run on the handles' libusb
// event thread, wake it when it idles, and never starve it.
@testable import DevifUSB
import Glibc
import Synchronization
import Testing

@Suite struct EventThreadExecutorTests {
    @Test func aTaskThatPrefersItRunsOnTheIdleEventThread() async throws {
        let context = try USBContext.shared()
        // Nothing in flight: the thread waits for demand and must be woken by the job.
        let (name, onEventThread) = await Task(executorPreference: EventThreadExecutor.shared) {
            (currentThreadName(), context.isEventThread)
        }.value
        #expect(name == "devif-usb-io")
        #expect(onEventThread)
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

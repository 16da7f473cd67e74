// The pipeline's queue: events applied one at a time in submission order,
// by the pipeline's thread or inline by an idle pipeline's submitter.
import Dispatch
import Foundation
import Synchronization
import Testing
@testable import Devif

@Suite("Pipeline queue") struct PipelineQueueTests {
    @Test("before start everything queues; then a lone item is applied inline, and a second one queues behind it")
    func inlineOnlyWhenIdle() {
        let queue = PipelineQueue<Int>()
        #expect(queue.submit(1, inlineAllowed: true) == .queued, "not started: queued, so a burst before start stays one")
        queue.markStarted()
        #expect(queue.submit(2, inlineAllowed: true) == .queued, "something queued: never overtaken")
        #expect(queue.next() == 1)
        #expect(queue.submit(3, inlineAllowed: true) == .queued, "the thread holds the turn (item 1 taken): 3 must not overtake 2")
        queue.finishTaken()
        #expect(queue.next() == 2)
        queue.finishTaken()
        #expect(queue.next() == 3)
        queue.finishTaken()
        #expect(queue.submit(4, inlineAllowed: false) == .queued, "not allowed inline: queued")
        #expect(queue.next() == 4)
        queue.finishTaken()
        #expect(queue.isEmpty)
        #expect(queue.submit(5, inlineAllowed: true) == .inline, "idle: applied by the submitter")
        #expect(queue.submit(6, inlineAllowed: true) == .queued, "an inline turn holds the pipeline")
        queue.finishInline()
        #expect(queue.next() == 6)
        queue.finishTaken()
        queue.close()
        #expect(queue.submit(7, inlineAllowed: true) == .dropped)
        #expect(queue.next() == nil)
    }

    @Test("the thread waits while a submitter applies inline, and is woken by the end of that turn")
    func threadWaitsForInlineTurn() {
        let queue = PipelineQueue<Int>()
        queue.markStarted()
        #expect(queue.submit(1, inlineAllowed: true) == .inline)
        #expect(queue.submit(2, inlineAllowed: true) == .queued)
        let took = DispatchSemaphore(value: 0)
        let taken = Mutex<Int?>(nil)
        Thread.detachNewThread {
            let item = queue.next()
            taken.withLock { $0 = item }
            took.signal()
        }
        // A bounded wait that must time out: the thread may not take 2 while 1 is applied.
        #expect(took.wait(timeout: .now() + .milliseconds(100)) == .timedOut, "the thread took an item during an inline turn")
        queue.finishInline()
        #expect(took.wait(timeout: .now() + .seconds(10)) == .success, "the end of the inline turn did not wake the thread")
        #expect(taken.withLock { $0 } == 2)
        queue.finishTaken()
        queue.close()
    }

    @Test("close waits for an inline turn to end")
    func closeWaitsForInlineTurn() {
        let queue = PipelineQueue<Int>()
        queue.markStarted()
        #expect(queue.submit(1, inlineAllowed: true) == .inline)
        let closed = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            queue.close()
            closed.signal()
        }
        #expect(closed.wait(timeout: .now() + .milliseconds(100)) == .timedOut, "close returned while an item was being applied")
        queue.finishInline()
        #expect(closed.wait(timeout: .now() + .seconds(10)) == .success)
        #expect(queue.next() == nil)
    }

    @Test("racing submitters and the thread: one apply at a time, each submitter's items in its order, none lost")
    func racingSubmitters() {
        let queue = PipelineQueue<(submitter: Int, seq: Int)>()
        let submitters = 4, perSubmitter = 20_000
        let applying = Atomic<Int>(0)
        let overlaps = Atomic<Int>(0)
        let last = Mutex([Int](repeating: -1, count: submitters))
        let outOfOrder = Atomic<Int>(0)
        let applied = Atomic<Int>(0)
        let inlineCount = Atomic<Int>(0)
        @Sendable func apply(_ item: (submitter: Int, seq: Int)) {
            if applying.add(1, ordering: .acquiringAndReleasing).newValue != 1 { overlaps.add(1, ordering: .relaxed) }
            last.withLock { l in
                if item.seq != l[item.submitter] + 1 { outOfOrder.add(1, ordering: .relaxed) }
                l[item.submitter] = item.seq
            }
            applied.add(1, ordering: .relaxed)
            applying.subtract(1, ordering: .acquiringAndReleasing)
        }
        queue.markStarted()
        let threadDone = DispatchSemaphore(value: 0), drained = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            while let item = queue.next() {
                // The marker queued last: everything before it is applied.
                if item.submitter < 0 { drained.signal() } else { apply(item) }
                queue.finishTaken()
            }
            threadDone.signal()
        }
        DispatchQueue.concurrentPerform(iterations: submitters) { submitter in
            for seq in 0..<perSubmitter {
                // Now and then let the thread catch up, so the pipeline is
                // idle at times and submitters race for inline turns.
                if seq % 64 == 0 { while !queue.isEmpty { sched_yield() } }
                // Some events are never applied inline (notices), as in the pipeline.
                if queue.submit((submitter, seq), inlineAllowed: seq % 7 != 0) == .inline {
                    inlineCount.add(1, ordering: .relaxed)
                    apply((submitter, seq))
                    queue.finishInline()
                }
            }
        }
        #expect(queue.submit((-1, 0), inlineAllowed: false) == .queued)
        #expect(drained.wait(timeout: .now() + .seconds(60)) == .success, "the thread did not reach the marker")
        queue.close()
        #expect(threadDone.wait(timeout: .now() + .seconds(10)) == .success)
        #expect(applied.load(ordering: .relaxed) == submitters * perSubmitter, "items lost")
        #expect(overlaps.load(ordering: .relaxed) == 0, "two items applied at once")
        #expect(outOfOrder.load(ordering: .relaxed) == 0, "a submitter's items applied out of order")
        #expect(inlineCount.load(ordering: .relaxed) > 0, "no item was ever applied inline: the test did not exercise the race")
        #expect(inlineCount.load(ordering: .relaxed) < submitters * perSubmitter, "every item inline: the thread was never raced")
    }
}

extension PipelineQueue.Turn: Equatable {}

import AllocationCounting
import Synchronization
import Testing
import DevifCore

@Suite struct CallbackSlotTests {
    @Test func callsReachTheCallbackUntilItIsCleared() {
        let slot = CallbackSlot<Int>()
        let sum = Atomic<Int>(0)
        #expect(!slot.call(1), "no callback set yet")
        slot.set { sum.add($0, ordering: .relaxed) }
        #expect(slot.call(2))
        #expect(slot.callHoldingLock(3))
        slot.set(nil)
        #expect(!slot.call(4))
        #expect(!slot.callHoldingLock(5))
        #expect(sum.load(ordering: .relaxed) == 5)
    }

    @Test func aCallbackMayReplaceItselfWhenCalledOutsideTheLock() {
        let slot = CallbackSlot<Int>()
        let seen = Mutex<[String]>([])
        slot.set { [slot] n in
            seen.withLock { $0.append("first \(n)") }
            slot.set { n in seen.withLock { $0.append("second \(n)") } }
        }
        slot.call(1)
        slot.call(2)
        #expect(seen.withLock { $0 } == ["first 1", "second 2"])
    }

    // The reason the slot exists: a function held directly in a Mutex grew by
    // two thunks (64 bytes) on every call (swiftlang/swift#91348), so each of
    // the pipeline's device removals leaked and slowed the next.
    @Test func callingAllocatesNothing() {
        let slot = CallbackSlot<Int>()
        let sum = Atomic<Int>(0)
        slot.set { sum.add($0, ordering: .relaxed) }
        for i in 0..<100 { slot.call(i); slot.callHoldingLock(i) }
        let calls = 10_000
        let allocations = AllocationCounter.count {
            for i in 0..<calls { slot.call(i); slot.callHoldingLock(i) }
        }
        #expect(AllocationCounter.patchedEntries > 0, "the counter is installed")
        #expect(allocations == 0, "\(allocations) heap allocations in \(2 * calls) calls")
        #expect(sum.load(ordering: .relaxed) == 2 * (0..<100).reduce(0, +) + 2 * (0..<calls).reduce(0, +))
    }
}

import AllocationCounting
import Foundation
import Glibc
import Synchronization
import Testing
@testable import DevifCore

/// The HID input stream's report buffers: sized from the descriptor, reused
/// only once nobody holds them, never truncating or dropping a report.
@Suite struct HIDReportPoolTests {
    private static func make(_ pool: inout HIDReportPool, _ bytes: [UInt8]) -> HIDReport {
        bytes.withUnsafeBytes { pool.make(copying: $0) }
    }

    @Test func buffersAreSizedFromTheDescriptorsLargestInputReport() throws {
        let size = { (d: [UInt8]) in HIDReportPool.largestInputReport(HIDReportDescriptor.parse(d)) }
        #expect(size(HIDReportDescriptorTests.vendor64) == 64)
        #expect(size(HIDReportDescriptorTests.keyboard) == 8)
        // With report IDs the ID byte counts: ID 2's 16 bits are 3 bytes.
        #expect(size(HIDReportDescriptorTests.keyboardAndConsumer) == 3)
        // Output reports only: no input size.
        #expect(size([0x06, 0x00, 0xff, 0x09, 0x01, 0xa1, 0x01, 0x75, 0x08, 0x95, 0x10, 0x91, 0x02, 0xc0]) == nil)
    }

    @Test func aReleasedBufferIsReusedAndAHeldOneIsNot() {
        var pool = HIDReportPool(reportCapacity: 8, limit: 16)
        do { _ = Self.make(&pool, [1, 2, 3]) }
        let first = Self.make(&pool, [4, 5])
        #expect(pool.made == 1, "the released buffer was reused")
        #expect(first.array == [4, 5])
        let second = Self.make(&pool, [6, 7, 8])
        #expect(pool.made == 2, "the held one was not")
        #expect(first.array == [4, 5] && second.array == [6, 7, 8])
        #expect(first.storage !== second.storage)
    }

    @Test func aReportLongerThanTheBuffersArrivesWholeInABufferOfItsOwn() {
        var pool = HIDReportPool(reportCapacity: 4, limit: 4)
        let long = Self.make(&pool, Array(0..<20))
        #expect(long.array == Array(0..<20))
        #expect(pool.pooled == 0)
        let short = Self.make(&pool, [9])
        #expect(short.array == [9] && pool.pooled == 1)
    }

    @Test func pastTheLimitReportsGetBuffersOfTheirOwnAndNoneIsOverwritten() {
        var pool = HIDReportPool(reportCapacity: 2, limit: 4)
        let held = (0..<10).map { i in Self.make(&pool, [UInt8(i), UInt8(i)]) }
        #expect(pool.pooled == 4)
        #expect(pool.made == 10)
        #expect(held.map(\.array) == (0..<10).map { [UInt8($0), UInt8($0)] })
    }

    @Test func reportsCompareAndPrintByTheirBytes() {
        #expect(HIDReport([1, 0xab]) == HIDReport([1, 0xab]))
        #expect(HIDReport([1]) != HIDReport([1, 0]))
        #expect(HIDReport([0x01, 0xab]).description == "01 ab")
        // From contiguous bytes (a slice) and from a collection that is not.
        #expect(HIDReport([9, 1, 0xab, 7][1...2]) == HIDReport([1, 0xab]))
        #expect(HIDReport((1...3).lazy.map { UInt8($0) }) == HIDReport([1, 2, 3]))
        #expect(Array(HIDReport([3, 4, 5])) == [3, 4, 5])
    }

    /// The reader's path, warm: each report is held while the next 8 are
    /// made (as a subscriber's queue holds them), then let go. Nothing is
    /// allocated. (The stress test below runs the pool through a fan-out's
    /// threads; here the holding is deterministic, so the count is exact.)
    @Test func aWarmPoolAllocatesNothingPerReport() {
        var pool = HIDReportPool(reportCapacity: 64, limit: 1024)
        let bytes = [UInt8](repeating: 0x5a, count: 64)
        var held = [HIDReport?](repeating: nil, count: 8)
        var slot = 0
        var intact = true
        func cycle(_ n: Int) {
            for _ in 0..<n {
                let report = bytes.withUnsafeBytes { pool.make(copying: $0) }
                if let old = held[slot], old.count != 64 || old[0] != 0x5a { intact = false }
                held[slot] = report   // lets go of the report made 8 ago
                slot = (slot + 1) % held.count
            }
        }
        cycle(100)
        let madeWarm = pool.made
        let allocations = AllocationCounter.count { cycle(10_000) }
        #expect(allocations == 0, "\(allocations) allocations in 10,000 warm reports")
        #expect(pool.made == madeWarm, "\(pool.made - madeWarm) buffers made after the warm-up")
        #expect(madeWarm == 9, "8 held and the one being made: \(madeWarm) buffers")
        #expect(intact)
    }

    /// Stress: a reader thread makes reports as fast as it can (each filled
    /// with its sequence number) for three subscribers, which hold some for a
    /// while and check them again when they let go. A buffer reused while
    /// still held would show up as a changed report.
    @Test func reportsHeldBySubscribersAreNeverOverwritten() async throws {
        let reports = 50_000
        let fan = FanOut<HIDInputEvent>()
        let corrupt = Atomic<Int>(0)
        let checked = Atomic<Int>(0)
        let (ends, ended) = AsyncStream<Void>.makeStream()
        @Sendable func intact(_ r: HIDReport) -> Bool {
            guard r.count == 16 else { return false }
            return r.withUnsafeBytes { b in
                let seq = b.loadUnaligned(as: UInt64.self)
                return b.dropFirst(8).allSatisfy { $0 == UInt8(truncatingIfNeeded: seq) }
            }
        }
        var subscriptions: [FanOut<HIDInputEvent>.CallbackSubscription] = []
        for k in 0..<3 {
            let kept = Mutex<[HIDReport]>([])
            subscriptions.append(fan.subscribe(capacity: 256, name: "hold-\(k)", onEnd: {
                kept.withLock { all in for r in all where !intact(r) { corrupt.add(1, ordering: .relaxed) } }
                ended.yield()
            }) { delivery in
                guard case .event(.report(let r)) = delivery else { return }
                if !intact(r) { corrupt.add(1, ordering: .relaxed) }
                checked.add(1, ordering: .relaxed)
                kept.withLock { all in
                    all.append(r)
                    // Subscriber k holds up to 8 << k reports, then checks and drops them.
                    if all.count > 8 << k {
                        for old in all where !intact(old) { corrupt.add(1, ordering: .relaxed) }
                        all.removeAll(keepingCapacity: true)
                    }
                }
            })
        }
        let producer = Thread {
            var pool = HIDReportPool(reportCapacity: 16, limit: 128)
            var bytes = [UInt8](repeating: 0, count: 16)
            for seq in 0..<UInt64(reports) {
                bytes.withUnsafeMutableBytes { b in
                    b.storeBytes(of: seq, as: UInt64.self)
                    for i in 8..<16 { b[i] = UInt8(truncatingIfNeeded: seq) }
                }
                bytes.withUnsafeBytes { fan.publish(.report(pool.make(copying: $0))) }
            }
            fan.finish()
        }
        producer.start()
        var endings = 0
        for await _ in ends {
            endings += 1
            if endings == 3 { break }
        }
        #expect(corrupt.load(ordering: .relaxed) == 0, "\(corrupt.load(ordering: .relaxed)) reports changed while held")
        #expect(checked.load(ordering: .relaxed) > 0)
        _ = subscriptions
    }
}

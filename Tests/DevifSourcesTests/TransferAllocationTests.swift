import AllocationCounting
@testable import DevifUSB
import Glibc
import Synchronization
import XCTest

/// What a warm transfer allocates on the queue-based adapters, counted on the
/// fake transport, whose completions run on the calling thread (where the
/// counter counts). The lab benchmark counts the real path with libusb
/// (libusb's URB array: 1 per submission); this pins devif's own share.
final class TransferAllocationTests: XCTestCase {
    func testAWarmPushReaderAllocatesNothingPerTransfer() throws {
        let (dev, fake) = quietDevice()
        let seen = Atomic<Int>(0)
        let reader = try dev.startReading(endpoint: 0x81, transferSize: 64, transfers: 4) { _ in
            seen.add(1, ordering: .relaxed)
            return .continue
        }
        fake.wait("four in flight") { $0.pending.count == 4 }
        for _ in 0..<100 { fake.complete(.completed, data: []) }  // warm: the queue's order array grown
        let n = AllocationCounter.count { for _ in 0..<1000 { fake.complete(.completed, data: []) } }
        XCTAssertEqual(n, 0, "allocations in 1000 completions handed over and resubmitted")
        XCTAssertEqual(seen.load(ordering: .relaxed), 1100)
        reader.stop()
        fake.completeCancelled()
        XCTAssertNil(reader.wait())
    }

    func testAWarmStreamAllocatesOnlyTheChunkItLends() throws {
        let (dev, fake) = quietDevice()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 4)
        fake.wait("four in flight") { $0.pending.count == 4 }
        for _ in 0..<100 {
            fake.complete(.completed, data: [])
            XCTAssertNotNil(try stream.nextChunk(timeout: .seconds(1)))
        }
        var failure: USBError?
        let n = AllocationCounter.count {
            for _ in 0..<1000 {
                fake.complete(.completed, data: [])
                do throws(USBError) { _ = try stream.nextChunk(timeout: .seconds(1)) } catch { failure = error }
            }
        }
        XCTAssertNil(failure)
        // The chunk is a class (its release gives the buffer back); nothing else.
        XCTAssertEqual(n, 1000, "allocations in 1000 chunks taken and released")
        stream.stop()
        fake.completeCancelled()
        XCTAssertNil(stream.wait())
    }

    private func quietDevice() -> (USBDevice, FakeTransport) {
        let fake = FakeTransport()
        addTeardownBlock { fake.drain() }
        fake.state.withLock { $0.recording = false }
        return (USBDevice(path: "/dev/bus/usb/009/001", transport: fake), fake)
    }
}

extension TransferAllocationTests {
    /// A blocking reader that waits for each chunk (parked until a completion
    /// from another thread) reuses its wait's semaphore: only the lent chunk
    /// is allocated on its thread.
    func testABlockingReaderThatWaitsForEachChunkAllocatesOnlyTheChunk() throws {
        let (dev, fake) = quietDevice()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 2)
        fake.wait("two in flight") { $0.pending.count == 2 }
        let rounds = 200
        let completer = Thread {
            let deadline = ContinuousClock.now + .seconds(20)
            for _ in 0..<(rounds + 100) {
                // Not fake.wait: the reader's parking does not wake it.
                while stream.waitingReaders != 1 {
                    guard ContinuousClock.now < deadline else { return }  // the test has failed: stop spinning
                    sched_yield()
                }
                fake.complete(.completed, data: [])
            }
        }
        completer.start()
        // Warm: the runtime's generic metadata, the queue's order array past a trim.
        for _ in 0..<100 { XCTAssertNotNil(try stream.nextChunk(timeout: .seconds(5))) }
        var failure: USBError?
        let n = AllocationCounter.count {
            for _ in 0..<rounds {
                do throws(USBError) { _ = try stream.nextChunk(timeout: .seconds(5)) } catch { failure = error }
            }
        }
        XCTAssertNil(failure)
        XCTAssertEqual(n, rounds, "allocations on the reader's thread in \(rounds) parked waits")
        stream.stop()
        fake.completeCancelled()
        XCTAssertNil(stream.wait())
    }
}

import DevifCore
@testable import DevifHID
import DevifLinux
@testable import DevifUSB
import Glibc
import AllocationCounting
import Dispatch
import Synchronization
import XCTest

/// The transfer engine's state machines, stepped by hand on a fake transport
/// (no device, no libusb): close racing a completion, removal racing a
/// submission, Task cancellation, stream and reader stop, the OUT stream's
/// backpressure, order and zero-length-packet rule. Lab tests run the same
/// code on real gadgets; these pin the interleavings a device cannot be
/// made to produce on demand. They also run under TSan (Lab/test).
final class TransferEngineTests: XCTestCase {
    private func device(_ fake: FakeTransport = FakeTransport()) -> (USBDevice, FakeTransport) {
        addTeardownBlock { fake.drain() }
        return (USBDevice(path: "/dev/bus/usb/009/001", transport: fake), fake)
    }

    /// Runs `body` on a new thread; the returned box gets its result.
    private func onThread<R: Sendable>(_ body: @escaping @Sendable () -> R) -> Outcome<R> {
        let outcome = Outcome<R>()
        Thread { outcome.set(body()) }.start()
        return outcome
    }

    // MARK: Single transfers

    func testSynchronousReadAndWritePumpTheirOwnCompletion() throws {
        let (dev, fake) = device()
        fake.onPump.withLock { $0 = { f in
            if f.snapshot.pending.first?.endpoint == 0x81 { f.complete(.completed, data: [1, 2, 3]) }
            else if !f.snapshot.pending.isEmpty { f.complete(.completed) }
        } }
        XCTAssertEqual(try dev.read(endpoint: 0x81, length: 64), [1, 2, 3])
        XCTAssertEqual(try dev.write(endpoint: 0x02, [9, 8, 7, 6]), 4)
        var into = [UInt8](repeating: 0, count: 8)
        let n = try into.withUnsafeMutableBytes { try dev.read(endpoint: 0x81, into: $0) }
        XCTAssertEqual(Array(into[0..<n]), [1, 2, 3])
        let s = fake.snapshot
        XCTAssertEqual(s.submitted.map(\.endpoint), [0x81, 0x02, 0x81])
        XCTAssertEqual(s.submitted[1].bytes, [9, 8, 7, 6])
        XCTAssertEqual(s.submitted.map(\.type), [.bulk, .bulk, .bulk])
        // The same transfer is reused for the endpoint's synchronous calls.
        XCTAssertTrue(s.submitted[0].box === s.submitted[2].box)
        XCTAssertEqual(s.demand, 0, "synchronous transfers never wake the event thread")
        XCTAssertEqual(s.claimed, [0], "the endpoint's interface is claimed on first use")
        dev.close()
        XCTAssertEqual(fake.snapshot.closes, 1)
        XCTAssertEqual(fake.snapshot.released, [0])
    }

    func testSynchronousTransfersFromAndIntoTheCallersMemoryLendItOnlyUntilTheCompletion() throws {
        let (dev, fake) = device()
        // Where each submission's bytes were, seen by the transport.
        let seen = Mutex<[UInt]>([])
        fake.onSubmit.withLock { $0 = { sub in seen.withLock { $0.append(UInt(bitPattern: sub.box.buffer.baseAddress)) } } }
        fake.onPump.withLock { $0 = { f in
            guard let first = f.snapshot.pending.first else { return }
            if first.endpoint == 0x81 { f.complete(first.length == 3 ? .timedOut : .completed, data: [4, 5, 6, 7]) }
            else { f.complete(.completed) }
        } }
        let out: [UInt8] = [9, 8, 7, 6, 5]
        var into = [UInt8](repeating: 0, count: 16)
        let sent = try out.withUnsafeBytes { b in
            XCTAssertEqual(try dev.write(endpoint: 0x02, from: b), 5)
            return UInt(bitPattern: b.baseAddress)
        }
        let (n, target) = try into.withUnsafeMutableBytes { b in
            (try dev.read(endpoint: 0x81, into: b), UInt(bitPattern: b.baseAddress))
        }
        XCTAssertEqual(n, 4)
        XCTAssertEqual(Array(into[0..<4]), [4, 5, 6, 7], "libusb filled the caller's memory itself")
        XCTAssertEqual(fake.snapshot.submitted[0].bytes, out)
        XCTAssertEqual(seen.withLock { $0 }, [sent, target], "the transfers were given the caller's memory, not a copy")
        // A transfer that ends in a timeout has completed too: then the
        // endpoint's transfer has its own buffer back.
        var short = [UInt8](repeating: 0, count: 3)
        XCTAssertThrowsError(try short.withUnsafeMutableBytes { b in try dev.read(endpoint: 0x81, into: b) }) {
            XCTAssertEqual($0 as? USBError, .timeout)
        }
        let boxes = fake.snapshot.submitted.map(\.box)
        XCTAssertTrue(boxes[1] === boxes[2], "the endpoint's synchronous transfer is reused")
        let kept = UInt(bitPattern: boxes[2].buffer.baseAddress)
        XCTAssertFalse([sent, target].contains(kept) || short.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == kept,
                       "a transfer keeps no caller's memory after the call")
        dev.close()
    }

    /// An async read pending on the fake, and a close() on another thread
    /// that has asked for its cancel.
    private func closingWithAReadPending() -> (USBDevice, FakeTransport, Outcome<Result<[UInt8], USBError>>, Outcome<Void>) {
        let (dev, fake) = device()
        let read = Outcome<Result<[UInt8], USBError>>()
        Task { read.set(await Result { () async throws(USBError) in try await dev.read(endpoint: 0x81, length: 64) }) }
        fake.wait("the read's submission") { $0.pending.count == 1 }
        let closed = onThread { dev.close() }
        fake.wait("close's cancel request") { $0.cancelRequests == 1 }
        return (dev, fake, read, closed)
    }

    func testCloseWaitsForACompletionThatRacesItsCancel() throws {
        let (dev, fake, read, closed) = closingWithAReadPending()
        XCTAssertFalse(closed.isSet, "close returned with a transfer in flight")
        XCTAssertEqual(fake.snapshot.closes, 0, "the device was closed under a pending transfer")
        // The device completed the transfer before the cancel took effect: its data is delivered.
        fake.complete(.completed, data: [42])
        XCTAssertEqual(try read.wait().get(), [42])
        try closed.wait()
        XCTAssertEqual(fake.snapshot.closes, 1)
        XCTAssertEqual(fake.snapshot.demand, 0)
        XCTAssertThrowsError(try dev.read(endpoint: 0x81, length: 1)) { XCTAssertEqual($0 as? USBError, .closed) }
        XCTAssertEqual(fake.snapshot.submitted.count, 1, "a closed device submits nothing")
    }

    func testCloseEndsAPendingTransferWithClosed() throws {
        let (dev, fake, read, closed) = closingWithAReadPending()
        fake.completeCancelled()
        XCTAssertThrowsError(try read.wait().get()) { XCTAssertEqual($0 as? USBError, .closed) }
        try closed.wait()
        XCTAssertEqual(fake.snapshot.closes, 1)
        dev.close()
        XCTAssertEqual(fake.snapshot.closes, 1, "a second close does nothing")
    }

    func testRemovalArrivingDuringASubmissionCancelsIt() throws {
        let (dev, fake) = device()
        // The removal comes from another thread while libusb's submit runs
        // under the device's lock: it must find the transfer pending after.
        fake.onSubmit.withLock { $0 = { _ in Thread { dev.markRemoved() }.start() } }
        let read = Outcome<Result<[UInt8], USBError>>()
        Task { read.set(await Result { () async throws(USBError) in try await dev.read(endpoint: 0x81, length: 64) }) }
        fake.wait("the removal's cancel request") { $0.cancelRequests == 1 }
        fake.completeCancelled()
        XCTAssertThrowsError(try read.wait().get()) { XCTAssertEqual($0 as? USBError, .deviceRemoved) }
        fake.onSubmit.withLock { $0 = nil }
        XCTAssertThrowsError(try dev.read(endpoint: 0x81, length: 1)) { XCTAssertEqual($0 as? USBError, .deviceRemoved) }
        XCTAssertEqual(fake.snapshot.submitted.count, 1, "a removed device submits nothing")
        XCTAssertEqual(fake.snapshot.demand, 0)
        XCTAssertEqual(dev.endReason, .deviceRemoved)
    }

    func testRemovalOrCloseBetweenRegistrationAndSubmissionStillCancelsTheTransfer() throws {
        // The device's lock is not held across libusb's submission: a removal
        // (or close) that comes after the box is registered and before it is
        // submitted finds it idle, so the submission must cancel it itself.
        for closing in [false, true] {
            let (dev, fake) = device()
            let closed = Outcome<Void>()
            dev.core.afterRegistering.set { [dev] in
                if closing { Thread { dev.close(); closed.set(()) }.start() } else { dev.markRemoved() }
                if closing { fake.wait("close's phase") { _ in dev.core.state.withLock { $0.phase == .closing } } }
            }
            let read = Outcome<Result<[UInt8], USBError>>()
            Task { read.set(await Result { () async throws(USBError) in try await dev.read(endpoint: 0x81, length: 64) }) }
            fake.wait("the late cancel request") { $0.cancelRequests == 1 }
            dev.core.afterRegistering.set(nil)
            fake.completeCancelled()
            XCTAssertThrowsError(try read.wait().get()) { XCTAssertEqual($0 as? USBError, closing ? .closed : .deviceRemoved) }
            if closing {
                try closed.wait()
                XCTAssertEqual(fake.snapshot.closes, 1, "the close waited for the transfer, then closed")
            }
            XCTAssertEqual(fake.snapshot.demand, 0)
        }
    }

    func testASubmissionRefusedForNoDeviceMarksTheDeviceRemoved() {
        let (dev, fake) = device()
        fake.state.withLock { $0.failNextSubmit = .noDevice }
        XCTAssertThrowsError(try dev.read(endpoint: 0x81, length: 1)) { XCTAssertEqual($0 as? USBError, .deviceRemoved) }
        XCTAssertEqual(dev.endReason, .deviceRemoved)
        XCTAssertEqual(fake.snapshot.demand, 0)
    }

    func testATransferErrorIsARemovalOnlyIfTheNodeHungUp() async throws {
        let (dev, fake) = device()
        async let first = Result { () async throws(USBError) in try await dev.read(endpoint: 0x81, length: 64) }
        fake.wait("the first read") { $0.pending.count == 1 }
        fake.complete(.failed)
        let firstResult = await first
        XCTAssertThrowsError(try firstResult.get()) { XCTAssertEqual($0 as? USBError, .io) }
        XCTAssertNil(dev.endReason)

        fake.state.withLock { $0.hungUp = true }
        async let second = Result { () async throws(USBError) in try await dev.read(endpoint: 0x81, length: 64) }
        fake.wait("the second read") { $0.pending.count == 1 }
        fake.complete(.failed)
        let secondResult = await second
        XCTAssertThrowsError(try secondResult.get()) { XCTAssertEqual($0 as? USBError, .deviceRemoved) }
        XCTAssertEqual(dev.endReason, .deviceRemoved)
    }

    func testCancellingTheTaskCancelsItsPendingTransfer() async throws {
        let (dev, fake) = device()
        let task = Task { () async throws(USBError) -> [UInt8] in try await dev.read(endpoint: 0x81, length: 64) }
        fake.wait("the read's submission") { $0.pending.count == 1 }
        task.cancel()
        fake.wait("the cancel request") { $0.cancelRequests == 1 }
        fake.completeCancelled()
        let result = await task.result
        XCTAssertThrowsError(try result.get()) { XCTAssertEqual($0 as? USBError, .cancelled) }
        XCTAssertEqual(fake.snapshot.demand, 0, "the event thread's demand is given back")
        XCTAssertNil(dev.endReason, "a cancelled read leaves the device usable")
    }

    // MARK: Streams and readers

    func testInStreamDeliversInOrderAndStopSubmitsNothingMore() throws {
        let (dev, fake) = device()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 2)
        fake.wait("two transfers in flight") { $0.pending.count == 2 }
        fake.complete(.completed, data: [1])
        fake.complete(.completed, data: [2])
        XCTAssertEqual(try stream.next(timeout: .seconds(5)), [1])
        XCTAssertEqual(try stream.next(timeout: .seconds(5)), [2])
        fake.wait("the spares refilled") { $0.pending.count == 2 }
        let before = fake.snapshot.submitted.count
        stream.stop()
        fake.wait("every transfer asked to cancel") { $0.cancelRequests >= 2 }
        fake.completeCancelled()
        XCTAssertNil(stream.wait(), "a stopped stream ends without an error")
        XCTAssertNil(try stream.next(timeout: .seconds(1)))
        XCTAssertEqual(fake.snapshot.submitted.count, before, "nothing was submitted after stop")
        XCTAssertEqual(fake.snapshot.demand, 0)
    }

    func testInStreamEndsWithTheRemovalAndWakesItsReader() throws {
        let (dev, fake) = device()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 2)
        fake.wait("two transfers in flight") { $0.pending.count == 2 }
        let next = onThread { Result { () throws(USBError) in try stream.next(timeout: nil) } }
        dev.markRemoved()
        fake.wait("the removal's cancels") { $0.cancelRequests >= 2 }
        fake.completeCancelled()
        XCTAssertThrowsError(try next.wait().get()) { XCTAssertEqual($0 as? USBError, .deviceRemoved) }
        XCTAssertEqual(stream.wait(), .deviceRemoved)
    }

    func testReaderStoppedByItsHandlerResubmitsNothing() throws {
        let (dev, fake) = device()
        let seen = Mutex<[[UInt8]]>([])
        let reader = try dev.startReading(endpoint: 0x81, transferSize: 64, transfers: 2) { bytes in
            seen.withLock { $0.append(Array(bytes)) }
            return bytes.first == 2 ? .stop : .continue
        }
        fake.wait("two transfers in flight") { $0.pending.count == 2 }
        fake.complete(.completed, data: [1])
        fake.wait("the first resubmitted") { $0.submitted.count == 3 }
        fake.complete(.completed, data: [2])
        fake.wait("the rest asked to cancel") { $0.cancelRequests >= 1 }
        fake.completeCancelled()
        XCTAssertNil(reader.wait())
        XCTAssertEqual(seen.withLock { $0 }, [[1], [2]])
        XCTAssertEqual(fake.snapshot.submitted.count, 3, "nothing resubmitted after .stop")
        XCTAssertEqual(fake.snapshot.demand, 0)
    }

    // MARK: OUT stream

    func testOutStreamQueuesInOrderWaitsWhenFullAndEndsWithAZeroLengthPacket() throws {
        let (dev, fake) = device()
        let stream = try dev.outStream(endpoint: 0x02, transferSize: 64, transfers: 2)
        let data = (0..<(64 * 4)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let wrote = onThread { Result { () throws(USBError) in try data.withUnsafeBytes { b in Result { () throws(USBError) in try stream.write(from: b) } }.get() } }
        fake.wait("two transfers queued") { $0.pending.count == 2 }
        XCTAssertFalse(wrote.isSet, "the write went on with every transfer in flight")
        fake.complete(.completed)
        fake.wait("the third queued once one came back") { $0.submitted.count == 3 }
        fake.complete(.completed)
        try wrote.wait().get()
        XCTAssertEqual(fake.snapshot.submitted.count, 4)
        let finished = onThread { Result { () throws(USBError) in try stream.finish(timeout: .seconds(5)) } }
        fake.complete(.completed)
        fake.complete(.completed)
        fake.wait("the zero-length end marker") { $0.submitted.count == 5 }
        fake.complete(.completed)
        XCTAssertEqual(try finished.wait().get(), UInt64(data.count))
        let s = fake.snapshot
        XCTAssertEqual(s.submitted.prefix(4).flatMap(\.bytes), data, "bytes out of order or lost")
        XCTAssertEqual(s.submitted.map(\.length), [64, 64, 64, 64, 0])
        XCTAssertEqual(s.submitted.map(\.zeroLengthPacket), [false, false, false, false, false])
        XCTAssertEqual(s.demand, 0)
        XCTAssertThrowsError(try stream.write(from: UnsafeRawBufferPointer(start: nil, count: 0))) {
            XCTAssertEqual($0 as? USBError, .closed)
        }
    }

    func testAnAsyncWriteFilledInPlaceSuspendsWhileEveryTransferIsInFlight() async throws {
        let (dev, fake) = device()
        let stream = try dev.outStream(endpoint: 0x02, transferSize: 64, transfers: 2)
        let wrote = Task { () async throws -> Void in
            try await stream.write(count: 64 * 3) { region, offset in
                for i in 0..<region.count { region[i] = UInt8(truncatingIfNeeded: offset + i) }
            }
        }
        // Suspended, not failed or gone on: parked for a transfer to come back.
        fake.wait("two transfers queued and the writer held back") { $0.pending.count == 2 && stream.waitingWriters == 1 }
        // It waits for half the queue (one of two) before refilling.
        fake.complete(.completed)
        try await wrote.value
        XCTAssertEqual(fake.snapshot.submitted.map(\.length), [64, 64, 64])
        XCTAssertEqual(fake.snapshot.submitted[2].bytes, (128..<192).map { UInt8(truncatingIfNeeded: $0) })
        stream.cancel()
    }

    func testOutStreamPartialLastTransferCarriesTheZeroLengthPacketFlag() async throws {
        let (dev, fake) = device()
        let stream = try dev.outStream(endpoint: 0x02, transferSize: 128, transfers: 4)
        try await stream.write(Array(repeating: 5, count: 200))
        fake.wait("one full transfer") { $0.submitted.count == 1 }
        async let total = Result { () async throws(USBError) in try await stream.finish() }
        fake.wait("the partial last one") { $0.submitted.count == 2 }
        fake.complete(.completed)
        fake.complete(.completed)
        let sent = await total
        XCTAssertEqual(try sent.get(), 200)
        XCTAssertEqual(fake.snapshot.submitted.map(\.length), [128, 72])
        XCTAssertEqual(fake.snapshot.submitted.map(\.zeroLengthPacket), [false, true])
    }

    func testOutStreamEndsAtTheFirstFailedTransfer() throws {
        let (dev, fake) = device()
        let stream = try dev.outStream(endpoint: 0x02, transferSize: 64, transfers: 2)
        let chunk = [UInt8](repeating: 1, count: 64)
        let wrote = onThread { Result { () throws(USBError) in
            for _ in 0..<3 { try chunk.withUnsafeBytes { b in Result { () throws(USBError) in try stream.write(from: b) } }.get() }
        } }
        fake.wait("two transfers queued") { $0.pending.count == 2 }
        fake.complete(.stall)
        XCTAssertThrowsError(try wrote.wait().get()) { XCTAssertEqual($0 as? USBError, .pipe) }
        fake.wait("the other cancelled") { $0.cancelRequests >= 1 }
        fake.completeCancelled()
        XCTAssertThrowsError(try stream.finish(timeout: .seconds(1))) { XCTAssertEqual($0 as? USBError, .pipe) }
        XCTAssertEqual(fake.snapshot.submitted.count, 2, "nothing submitted after the failure")
    }

    func testOutStreamRefusesATransferSizeThatIsNotWholePackets() {
        let (dev, _) = device()
        XCTAssertThrowsError(try dev.outStream(endpoint: 0x02, transferSize: 100)) {
            XCTAssertEqual($0 as? USBError, USBError.invalid(""))
        }
        XCTAssertThrowsError(try dev.outStream(endpoint: 0x81)) { _ in }
    }
}

/// A value set once by another thread or task, waited for by the test.
final class Outcome<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    private let ready = DispatchSemaphore(value: 0)
    func set(_ v: T) {
        value.withLock { $0 = v }
        ready.signal()
    }
    var isSet: Bool { value.withLock { $0 != nil } }
    struct TimedOut: Error {}
    @discardableResult
    func wait(file: StaticString = #filePath, line: UInt = #line) throws -> T {
        if ready.wait(timeout: .now() + .seconds(10)) == .timedOut {
            XCTFail("timed out", file: file, line: line)
            throw TimedOut()
        }
        ready.signal()
        return value.withLock { $0! }
    }
}

extension Result where Failure == USBError {
    init(_ body: () async throws(USBError) -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// Each backend error becomes the one handle error with its code, the
/// failed operation and what the system said (an errno where a system call
/// failed, a libusb status where libusb did, nothing where devif refused).
final class HandleErrorMappingTests: XCTestCase {
    func testUSBErrorsKeepTheirOriginBelow() {
        let denied = HandleError(USBError(errno: 13, like: USBError.access.libusbCode, operation: "open(/dev/bus/usb/001/002)"), link: "L")
        XCTAssertEqual(denied.code, .permissionDenied)
        XCTAssertEqual(denied.underlying, .errno(13))
        XCTAssertEqual(denied.detail, "open(/dev/bus/usb/001/002)")
        XCTAssertEqual(denied.link, "L")
        let stall = HandleError(USBError(libusbCode: USBError.pipe.libusbCode, operation: "bulk IN 0x81"), link: "L")
        XCTAssertEqual(stall.code, .stall)
        XCTAssertEqual(stall.underlying, .libusb(code: USBError.pipe.libusbCode, name: "LIBUSB_ERROR_PIPE"))
        XCTAssertEqual(HandleError(USBError.closed("x"), link: "L").underlying, nil)
        XCTAssertEqual(HandleError(USBError.closed("x"), link: "L").code, .closed)
        XCTAssertEqual(HandleError(USBError.cancelled("x"), link: "L").code, .cancelled)
        XCTAssertEqual(HandleError(USBError.invalid("endpoint 0x05"), link: "L").code, .invalidArgument)
        XCTAssertNil(HandleError(USBError.invalid("endpoint 0x05"), link: "L").underlying, "devif's own refusal has no libusb status")
        XCTAssertEqual(HandleError(USBError.removed("x"), link: "L").code, .deviceRemoved)
    }

    func testHIDErrorsCarryTheirErrno() {
        let denied = HandleError(HIDError.opening(LinuxError(code: EACCES, call: "open", subject: "/dev/hidraw0")), link: "H")
        XCTAssertEqual(denied.code, .permissionDenied)
        XCTAssertEqual(denied.underlying, .errno(EACCES))
        XCTAssertEqual(denied.detail, "open(/dev/hidraw0)")
        let unsupported = HandleError(HIDError.operating(LinuxError(code: ENOTTY, call: "ioctl", subject: "HIDIOCGINPUT")), link: "H")
        XCTAssertEqual(unsupported.code, .unsupported)
        XCTAssertEqual(HandleError(HIDError.tooLong("report"), link: "H").code, .invalidArgument)
    }
}

extension TransferEngineTests {
    func testAHeldBackOutStreamWakesOncePerHalfQueue() throws {
        let (dev, fake) = device()
        let stream = try dev.outStream(endpoint: 0x02, transferSize: 64, transfers: 4)
        let chunk = [UInt8](repeating: 3, count: 64 * 6)
        let wrote = onThread { Result { () throws(USBError) in
            try chunk.withUnsafeBytes { b in Result { () throws(USBError) in try stream.write(from: b) } }.get()
        } }
        // Parked before the first completion: a writer that finds one done
        // takes it without waiting, then waits for two more.
        fake.wait("the writer held back") { $0.pending.count == 4 && stream.waitingWriters == 1 }
        fake.complete(.completed)
        // One back is not half the queue: the writer stays parked. The second
        // wakes it, and it refills both at once.
        fake.complete(.completed)
        fake.wait("both refilled") { $0.submitted.count == 6 }
        try wrote.wait().get()
        XCTAssertEqual(fake.snapshot.pending.count, 4)
        XCTAssertEqual(stream.bytesSent, 128)
        stream.cancel()
        fake.completeCancelled()
    }
}

extension TransferEngineTests {
    func testAnInStreamChunkLendsItsBufferUntilReleased() throws {
        let (dev, fake) = device()
        // One transfer in flight, one spare buffer.
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 1)
        fake.wait("one in flight") { $0.pending.count == 1 }
        fake.complete(.completed, data: [7])
        XCTAssertEqual(fake.snapshot.submitted.count, 2, "the spare went out at the completion")
        var first: USBInChunk? = try stream.nextChunk(timeout: .seconds(5))
        XCTAssertEqual(first?.array, [7])
        fake.complete(.completed, data: [8])
        let second = try XCTUnwrap(try stream.nextChunk(timeout: .seconds(5)))
        XCTAssertEqual(Array(second.bytes), [8])
        // Both buffers are lent out: nothing is in flight until one comes back.
        XCTAssertEqual(fake.snapshot.submitted.count, 2)
        XCTAssertEqual(fake.snapshot.pending.count, 0)
        XCTAssertEqual(first?.array, [7], "a held chunk's bytes stay as they came")
        first = nil
        XCTAssertEqual(fake.snapshot.submitted.count, 3, "the released buffer went out again")
        XCTAssertTrue(fake.snapshot.submitted[2].box === fake.snapshot.submitted[0].box)
        stream.stop()
        fake.completeCancelled()
        XCTAssertNil(stream.wait())
        _ = second
    }
}

extension TransferEngineTests {
    func testOutStreamFilledInPlaceGetsConsecutiveRegionsThatCoverTheCount() async throws {
        let (dev, fake) = device()
        let stream = try dev.outStream(endpoint: 0x02, transferSize: 64, transfers: 4)
        var regions: [Range<Int>] = []
        // The blocking form (from a synchronous function), then the async one.
        func writeBlocking() throws(USBError) {
            try stream.write(count: 40) { region, offset in
                regions.append(offset..<(offset + region.count))
                for i in 0..<region.count { region[i] = UInt8(truncatingIfNeeded: offset + i) }
            }
        }
        try writeBlocking()
        try await stream.write(count: 110) { region, offset in
            regions.append(offset..<(offset + region.count))
            for i in 0..<region.count { region[i] = UInt8(truncatingIfNeeded: 40 + offset + i) }
        }
        // The second write crossed from the first buffer into two more.
        XCTAssertEqual(regions, [0..<40, 0..<24, 24..<88, 88..<110])
        async let total = Result { () async throws(USBError) in try await stream.finish() }
        fake.wait("three transfers") { $0.submitted.count == 3 }
        for _ in 0..<3 { fake.complete(.completed) }
        let sent = await total
        XCTAssertEqual(try sent.get(), 150)
        XCTAssertEqual(fake.snapshot.submitted.map(\.length), [64, 64, 22])
        XCTAssertEqual(fake.snapshot.submitted.flatMap(\.bytes), (0..<150).map { UInt8($0) })
    }
}

extension TransferEngineTests {
    /// Control transfers into and from the caller's memory reuse the control
    /// pipe's transfer; a failure still names the request it carried.
    func testControlTransfersUseTheCallersMemoryAndNameTheFailedRequest() throws {
        let (dev, fake) = device()
        let reply: [UInt8] = [1, 2, 3, 4]
        fake.onPump.withLock { $0 = { f in
            let setup = f.snapshot.pending.first?.box.buffer[1]
            f.complete(setup == 9 ? .stall : .completed, data: reply)
        } }
        let data: [UInt8] = [7, 8, 9]
        let sent = try data.withUnsafeBytes { b in
            Result { () throws(USBError) in try dev.controlOut(requestType: 0x41, request: 1, value: 2, index: 3, from: b) }
        }.get()
        XCTAssertEqual(sent, 3)
        XCTAssertEqual(fake.snapshot.submitted[0].type, .control)
        XCTAssertEqual(fake.snapshot.submitted[0].length, 11)
        var into = [UInt8](repeating: 0, count: 8)
        let got = try into.withUnsafeMutableBytes { b in
            Result { () throws(USBError) in try dev.controlIn(requestType: 0xC1, request: 2, value: 0, index: 0, into: b) }
        }.get()
        XCTAssertEqual(Array(into[0..<got]), reply)
        XCTAssertTrue(fake.snapshot.submitted[0].box === fake.snapshot.submitted[1].box, "the control pipe's transfer is reused")
        XCTAssertThrowsError(try dev.controlIn(requestType: 0xC1, request: 9, value: 0x55, index: 1, length: 4)) {
            XCTAssertEqual($0 as? USBError, .pipe)
            XCTAssertTrue("\($0)".contains("control request 0x09 (type 0xc1, value 0x0055, index 0x0001)"), "\($0)")
        }
    }
}

/// The IN stream and the push reader as adapters on the transfer queue:
/// several readers at once, a reader holding every buffer, an error in the
/// middle of a stream, a stop racing a refill or a resubmission.
extension TransferEngineTests {
    func testTwoReadersOfOneStreamTakeEachChunkOnceAndInOrder() throws {
        let (dev, fake) = device()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 2)
        fake.wait("two transfers in flight") { $0.pending.count == 2 }
        let taken = Mutex<[UInt8]>([])
        let readers = (0..<2).map { _ in
            onThread { Result { () throws(USBError) in
                while let chunk = try stream.next(timeout: .seconds(5)) { taken.withLock { $0 += chunk } }
            } }
        }
        for i in 1...40 {
            fake.wait("a transfer to complete") { !$0.pending.isEmpty }
            fake.complete(.completed, data: [UInt8(i)])
        }
        fake.wait("every chunk taken") { _ in taken.withLock { $0.count } == 40 }
        stream.stop()
        fake.completeCancelled()
        for r in readers { try r.wait().get() }
        XCTAssertEqual(taken.withLock { $0 }.sorted(), (1...40).map(UInt8.init), "a chunk lost or taken twice")
        XCTAssertNil(stream.wait())
        XCTAssertEqual(stream.bytesReceived, 40)
        XCTAssertLessThanOrEqual(fake.snapshot.submitted.count, 42, "more went out than came back plus two in flight")
    }

    func testAReaderHoldingEveryBufferWaitsUntilOneIsReleased() throws {
        let (dev, fake) = device()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 1)
        fake.wait("one in flight") { $0.pending.count == 1 }
        fake.complete(.completed, data: [1])
        fake.complete(.completed, data: [2])
        var held: [USBInChunk] = [try XCTUnwrap(try stream.nextChunk(timeout: .seconds(5)))]
        held.append(try XCTUnwrap(try stream.nextChunk(timeout: .seconds(5))))
        XCTAssertEqual(fake.snapshot.pending.count, 0, "both buffers are lent out")
        XCTAssertThrowsError(try stream.nextChunk(timeout: .milliseconds(20))) {
            XCTAssertEqual($0 as? USBError, .timeout, "nothing in flight: the wait times out, it does not end the stream")
        }
        let third = onThread { Result { () throws(USBError) in try stream.next(timeout: .seconds(5)) } }
        held.removeFirst()  // its buffer goes out again, and the waiting reader waits for it
        fake.wait("the released buffer in flight") { $0.pending.count == 1 }
        fake.complete(.completed, data: [3])
        XCTAssertEqual(try third.wait().get(), [3])
        stream.stop()
        fake.completeCancelled()
        XCTAssertNil(stream.wait())
        _ = held
    }

    func testAnErrorInTheMiddleEndsTheStreamAfterTheChunksBeforeIt() throws {
        let (dev, fake) = device()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 3)
        fake.wait("three in flight") { $0.pending.count == 3 }
        fake.complete(.completed, data: [1])
        fake.complete(.stall)
        fake.wait("the others asked to cancel") { $0.cancelRequests >= 2 }
        let submittedAtTheError = fake.snapshot.submitted.count
        fake.completeCancelled()
        XCTAssertEqual(try stream.next(timeout: .seconds(5)), [1], "a chunk that came before the error is still read")
        XCTAssertThrowsError(try stream.next(timeout: .seconds(5))) { XCTAssertEqual($0 as? USBError, .pipe) }
        XCTAssertThrowsError(try stream.next(timeout: .seconds(5))) { XCTAssertEqual($0 as? USBError, .pipe) }
        XCTAssertEqual(stream.wait(), .pipe)
        XCTAssertEqual(fake.snapshot.submitted.count, submittedAtTheError, "nothing submitted after the error")
        XCTAssertEqual(fake.snapshot.pending.count, 0)
        XCTAssertEqual(fake.snapshot.demand, 0)
    }

    func testCancellingAWaitingStreamReaderLeavesTheStreamRunning() async throws {
        let (dev, fake) = device()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 2)
        fake.wait("two in flight") { $0.pending.count == 2 }
        let waiting = Task { await Result { () async throws(USBError) in try await stream.next() } }
        fake.wait("the reader parked") { _ in stream.waitingReaders == 1 }
        waiting.cancel()
        let cancelled = await waiting.value
        XCTAssertThrowsError(try cancelled.get()) { XCTAssertEqual($0 as? USBError, .cancelled) }
        XCTAssertEqual(fake.snapshot.cancelRequests, 0, "the reader's cancellation cancels no transfer")
        fake.complete(.completed, data: [9])
        let next = await Result { () async throws(USBError) in try await stream.next() }
        XCTAssertEqual(try next.get(), [9])
        stream.stop()
        fake.completeCancelled()
        let end = await stream.wait()
        XCTAssertNil(end)
    }

    func testAStopRacingARefillLeavesNothingInFlight() throws {
        let (dev, fake) = device()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 1)
        fake.wait("one in flight") { $0.pending.count == 1 }
        stream.beforeSubmit.set { [stream] in stream.stop() }
        fake.complete(.completed, data: [1])  // the refill takes the spare, then stop() comes
        fake.completeCancelled()
        XCTAssertNil(stream.wait())
        XCTAssertEqual(fake.snapshot.submitted.count, 1, "the spare was not submitted after stop()")
        XCTAssertEqual(fake.snapshot.pending.count, 0)
        XCTAssertEqual(fake.snapshot.demand, 0)
        stream.beforeSubmit.set(nil)
    }

    func testAReaderStoppedJustBeforeItResubmitsEndsWithNothingInFlight() throws {
        let (dev, fake) = device()
        let reader = try dev.startReading(endpoint: 0x81, transferSize: 64, transfers: 2) { _ in .continue }
        fake.wait("two in flight") { $0.pending.count == 2 }
        reader.beforeResubmit.set { [reader] in reader.stop() }
        fake.complete(.completed, data: [1])
        fake.wait("the other asked to cancel") { $0.cancelRequests >= 1 }
        fake.completeCancelled()
        XCTAssertNil(reader.wait())
        XCTAssertEqual(fake.snapshot.submitted.count, 2, "nothing resubmitted after stop()")
        XCTAssertEqual(fake.snapshot.pending.count, 0)
        XCTAssertEqual(fake.snapshot.demand, 0)
        XCTAssertEqual(reader.bytesReceived, 1)
        reader.beforeResubmit.set(nil)
    }

    func testAReaderEndsWithTheFirstTransferErrorAndHandsOverWhatCameBefore() async throws {
        let (dev, fake) = device()
        let seen = Mutex<[UInt8]>([])
        let reader = try dev.startReading(endpoint: 0x81, transferSize: 64, transfers: 2) { bytes in
            seen.withLock { $0 += bytes }
            return .continue
        }
        fake.wait("two in flight") { $0.pending.count == 2 }
        fake.complete(.completed, data: [1])
        fake.wait("resubmitted") { $0.submitted.count == 3 }
        fake.complete(.completed, data: [2])
        fake.wait("resubmitted") { $0.submitted.count == 4 }
        fake.complete(.stall)
        fake.wait("the other asked to cancel") { $0.cancelRequests >= 1 }
        fake.completeCancelled()
        let end = await reader.wait()
        XCTAssertEqual(end, .pipe)
        XCTAssertEqual(seen.withLock { $0 }, [1, 2])
        XCTAssertEqual(fake.snapshot.submitted.count, 4, "nothing resubmitted after the error")
        XCTAssertEqual(fake.snapshot.demand, 0)
    }
}

extension TransferEngineTests {
    /// A stream refills from the event thread (at each completion) and from
    /// its reader (a released chunk) at once; the queue's order must stay
    /// the order the transport got the transfers in, which is the order the
    /// device fills them. The fake completes its oldest pending transfer
    /// with a counter; the reader must see the counters in order.
    func testRefillsFromTheReaderAndTheEventThreadAtOnceKeepTheDevicesOrder() throws {
        let (dev, fake) = device()
        fake.state.withLock { $0.recording = false }
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 4, transfers: 4)
        let total = 5_000
        let reader = onThread { () -> [UInt32] in
            var seen: [UInt32] = []
            seen.reserveCapacity(total)
            while seen.count < total, let chunk = try? stream.nextChunk(timeout: .seconds(10)) {
                seen.append(chunk.bytes.loadUnaligned(as: UInt32.self))
            }
            return seen
        }
        var sent: UInt32 = 0
        while sent < total {
            let next = fake.state.withLock { s -> FakeTransport.Submission? in s.pending.isEmpty ? nil : s.pending.removeFirst() }
            guard let next else { continue }  // the reader holds every buffer: it releases one soon
            withUnsafeBytes(of: sent) { next.box.buffer.copyMemory(from: $0) }
            TransferBox.transportCompleted(next.box.opaque, status: .completed, length: 4)
            sent += 1
        }
        let seen = try reader.wait()
        stream.stop()
        fake.completeCancelled()
        XCTAssertNil(stream.wait())
        XCTAssertEqual(seen.count, total)
        let outOfOrder = zip(seen, seen.dropFirst()).filter { $0.1 != $0.0 + 1 }.count
        XCTAssertEqual(outOfOrder, 0, "chunks out of the order the transport got them in")
    }
}

extension TransferEngineTests {
    /// The same, stepped: a released chunk's refill (on another thread)
    /// comes while the event thread's refill has its place in the order but
    /// has not reached the transport yet. The second must wait for the
    /// first, or the device fills them in the other order than they are read.
    func testARefillRacingAnotherReachesTheTransportInItsOrder() throws {
        let (dev, fake) = device()
        let stream = try dev.inStream(endpoint: 0x81, transferSize: 4, transfers: 2)
        for i: UInt8 in 1...4 {
            fake.wait("a transfer in flight") { !$0.pending.isEmpty }
            fake.complete(.completed, data: [i])
        }
        var held = try (0..<4).map { _ in try XCTUnwrap(try stream.nextChunk(timeout: .seconds(5))) }
        XCTAssertEqual(held.map { $0.bytes.first }, [1, 2, 3, 4])
        XCTAssertEqual(fake.snapshot.pending.count, 0, "every buffer lent out")
        let second = Mutex<USBInChunk?>(held.removeLast())
        let armed = Atomic<Bool>(true)
        let other = Outcome<Void>()
        stream.afterOrdering.set { [fake] in
            guard armed.exchange(false, ordering: .relaxed) else { return }
            // The second refill, from another thread, while this one is placed but not submitted.
            Thread { second.withLock { $0 = nil }; other.set(()) }.start()
            // With the order kept it cannot reach the transport before this
            // one: wait a little for it to try (it does so at once if it can).
            let deadline = ContinuousClock.now + .milliseconds(200)
            while fake.snapshot.pending.isEmpty, ContinuousClock.now < deadline { usleep(1000) }
        }
        held.removeFirst()  // the first refill, on this thread
        try other.wait()
        fake.wait("both refilled") { $0.pending.count == 2 }
        fake.complete(.completed, data: [5])
        fake.complete(.completed, data: [6])
        XCTAssertEqual(try stream.next(timeout: .seconds(5)), [5])
        XCTAssertEqual(try stream.next(timeout: .seconds(5)), [6], "read in another order than the transport got them")
        stream.afterOrdering.set(nil)
        held.removeAll()
        stream.stop()
        fake.completeCancelled()
        XCTAssertNil(stream.wait())
    }
}

extension TransferEngineTests {
    /// A stream dropped with transfers in flight cancels them; their
    /// completions still reach the device's bookkeeping, so close() returns
    /// and the event thread's demand is given back.
    func testADroppedStreamsTransfersStillLetTheDeviceClose() throws {
        let (dev, fake) = device()
        do {
            let stream = try dev.inStream(endpoint: 0x81, transferSize: 64, transfers: 3)
            fake.wait("three in flight") { $0.pending.count == 3 }
            fake.complete(.completed, data: [1])  // one done and never taken
            _ = stream
        }
        fake.wait("the dropped stream's transfers asked to cancel") { $0.cancelRequests >= 3 }
        fake.completeCancelled()
        XCTAssertEqual(fake.snapshot.pending.count, 0)
        XCTAssertEqual(fake.snapshot.demand, 0, "every completion ran the device's part")
        let closed = onThread { dev.close() }
        try closed.wait()
        XCTAssertEqual(fake.snapshot.closes, 1)
    }
}

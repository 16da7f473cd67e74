import DevifCore
@testable import DevifUSB
import Dispatch
import Synchronization
import XCTest

/// A transport a test steps by hand (NIO's EmbeddedEventLoop idea): it
/// records each submission and cancel request, and a transfer ends only
/// when the test says how (``complete(_:status:data:)``). The engine above it
/// is the production code.
final class FakeTransport: USBTransport, @unchecked Sendable {  // all state under `state`
    struct Submission {
        let box: TransferBox
        let type: USBEndpoint.TransferType
        let endpoint: UInt8
        let length: Int
        let zeroLengthPacket: Bool
        /// OUT: the bytes as submitted.
        let bytes: [UInt8]
    }

    struct State {
        var pending: [Submission] = []
        var submitted: [Submission] = []
        var cancelRequests = 0
        var cancelled: Set<ObjectIdentifier> = []
        var demand = 0
        var closes = 0
        var claimed: Set<Int> = []
        var released: [Int] = []
        var failNextSubmit: USBError?
        var hungUp = false
        /// Off: keep no record of submissions (`submitted`, OUT bytes), so the
        /// fake allocates nothing per transfer (allocation-count tests).
        var recording = true
    }

    let state = Mutex(State())
    private let changed = DispatchSemaphore(value: 0)
    private let endpointList: [(endpoint: USBEndpoint, interface: Int)]
    /// Runs in `pump(until:)` (a synchronous transfer waiting): it usually completes the transfer.
    let onPump = Mutex<(@Sendable (FakeTransport) -> Void)?>(nil)
    /// Runs inside `submit`, with the device's lock held (as libusb's submit would).
    let onSubmit = Mutex<(@Sendable (Submission) -> Void)?>(nil)

    /// Bulk 0x81 IN and 0x02 OUT on interface 0, 64-byte packets.
    init(endpoints: [(endpoint: USBEndpoint, interface: Int)] = [
        (USBEndpoint(address: 0x81, attributes: 2, maxPacketSize: 64, interval: 0), 0),
        (USBEndpoint(address: 0x02, attributes: 2, maxPacketSize: 64, interval: 0), 0),
    ]) {
        endpointList = endpoints
    }

    // MARK: USBTransport

    func makeNative() throws(USBError) -> UnsafeMutableRawPointer? { nil }
    func freeNative(_ native: UnsafeMutableRawPointer?) {}

    func submit(_ box: TransferBox, type: USBEndpoint.TransferType, endpoint: UInt8, length: Int,
                timeoutMilliseconds: UInt32, zeroLengthPacket: Bool) throws(USBError) {
        let recording = state.withLock { $0.recording }
        let bytes = recording && endpoint & 0x80 == 0 ? Array(UnsafeRawBufferPointer(rebasing: box.buffer[0..<length])) : []
        let submission = Submission(box: box, type: type, endpoint: endpoint, length: length,
                                    zeroLengthPacket: zeroLengthPacket, bytes: bytes)
        let failure = state.withLock { s -> USBError? in
            if let f = s.failNextSubmit {
                s.failNextSubmit = nil
                return f
            }
            s.pending.append(submission)
            if s.recording { s.submitted.append(submission) }
            return nil
        }
        if let failure { throw failure }
        onSubmit.withLock { $0 }?(submission)
        changed.signal()
    }

    func cancel(_ box: TransferBox) {
        state.withLock { s in
            s.cancelRequests += 1
            s.cancelled.insert(ObjectIdentifier(box))
        }
        changed.signal()
    }

    var isEventThread: Bool { CompletionThread.isInside }
    func beginAsync() { state.withLock { $0.demand += 1 } }
    func endAsync() { state.withLock { $0.demand -= 1 } }

    func pump(until waiter: TransferWaiter) {
        while !waiter.isFinished {
            onPump.withLock { $0 }?(self)
            if !waiter.isFinished { _ = changed.wait(timeout: .now() + .milliseconds(10)) }
        }
    }

    func hungUp() -> Bool { state.withLock { $0.hungUp } }
    func endpointDescriptors() -> [(endpoint: USBEndpoint, interface: Int)] { endpointList }
    func claim(interface: Int) throws(USBError) { state.withLock { _ = $0.claimed.insert(interface) } }
    func release(interface: Int) throws(USBError) { state.withLock { $0.released.append(interface) } }
    func setAlternateSetting(_ setting: Int, interface: Int) throws(USBError) {}
    func clearHalt(endpoint: UInt8) throws(USBError) {}
    func close() {
        state.withLock { $0.closes += 1 }
        changed.signal()
    }

    // MARK: Stepping

    /// Ends the oldest pending transfer (on `endpoint`, if given): IN data is
    /// copied into its buffer; OUT `length` defaults to all it held.
    @discardableResult
    func complete(endpoint: UInt8? = nil, _ status: TransferStatus, data: [UInt8] = [], length: Int? = nil,
                  file: StaticString = #filePath, line: UInt = #line) -> Submission? {
        let next = state.withLock { s -> Submission? in
            // A loop, not firstIndex(where:), whose closure allocates in a
            // debug build: allocation tests complete transfers through here.
            for i in s.pending.indices where endpoint == nil || s.pending[i].endpoint == endpoint {
                return s.pending.remove(at: i)
            }
            return nil
        }
        guard let next else {
            XCTFail("no pending transfer to complete", file: file, line: line)
            return nil
        }
        // A control transfer's buffer starts with the 8-byte setup packet, and
        // its length as libusb reports it counts the data stage only.
        let isControl = next.type == .control
        let start = isControl ? 8 : 0
        let isIn = isControl ? next.box.buffer[0] & 0x80 != 0 : next.endpoint & 0x80 != 0
        let n: Int
        if isIn {
            n = min(data.count, next.length - start)
            data.withUnsafeBytes {
                UnsafeMutableRawBufferPointer(rebasing: next.box.buffer[start..<(start + n)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<n]))
            }
        } else {
            n = length ?? next.length - start
        }
        TransferBox.transportCompleted(next.box.opaque, status: status == .completed ? .completed : status,
                                       length: status == .completed ? n : 0)
        changed.signal()
        return next
    }

    /// Ends every pending transfer that was asked to cancel, as cancelled.
    func completeCancelled() {
        let done = state.withLock { s -> [Submission] in
            let hit = s.pending.filter { s.cancelled.contains(ObjectIdentifier($0.box)) }
            s.pending.removeAll { s.cancelled.contains(ObjectIdentifier($0.box)) }
            return hit
        }
        for d in done { TransferBox.transportCompleted(d.box.opaque, status: .cancelled, length: 0) }
        changed.signal()
    }

    /// At the end of a test: ends whatever is still pending (as cancelled)
    /// and forgets every submission. The fake's records hold the boxes and
    /// each box holds its transport, so without this each test would leak
    /// a cycle (and a pending box its own +1) for the leak checker to find.
    func drain() {
        let left = state.withLock { s -> [Submission] in
            defer { s.pending = []; s.submitted = [] }
            return s.pending
        }
        for d in left { TransferBox.transportCompleted(d.box.opaque, status: .cancelled, length: 0) }
    }

    /// Waits (5 s at most, on the fake's own events) until `condition` holds.
    func wait(_ what: String, file: StaticString = #filePath, line: UInt = #line,
              until condition: (State) -> Bool) {
        let deadline = ContinuousClock.now + .seconds(5)
        while !state.withLock({ condition($0) }) {
            guard ContinuousClock.now < deadline else {
                XCTFail("timed out waiting for \(what)", file: file, line: line)
                return
            }
            _ = changed.wait(timeout: .now() + .milliseconds(50))
        }
    }

    var snapshot: State { state.withLock { $0 } }
}

import DevifCore
import Dispatch
import Synchronization

/// One transfer and its buffer, reused across submissions, on any
/// ``USBTransport``.
///
/// The state is explicit (as in nusb) so that completion, cancellation and
/// release never race:
/// - `idle`: not submitted; the owner may fill and submit it, or free it.
/// - `pending`: the transport owns it; only its completion moves it on.
///   A cancel request while pending asks the transport to cancel (the
///   completion still comes, once).
///
/// While pending, the box holds a +1 reference on itself (``opaque`` is what
/// the transport carries), so it outlives any owner until its completion.
/// An owner that goes away while it is pending abandons it: it cancels it,
/// and the completion still runs the device's bookkeeping (the transfer is
/// no longer in flight, the event thread's demand is given back) while the
/// owner's part, held weakly, finds nothing to deliver to.
///
/// Its mutable fields are `@exclusivity(unchecked)`: each is written only by
/// the owner while the box is idle or under a lock (the box's, its queue's
/// or its device's), and the runtime's check of every access cost a
/// thread-local lookup per field per transfer on the event thread (`perf`
/// in the lab VM).
package final class TransferBox: @unchecked Sendable {  // fields are written only in `idle` by the owner, or under `lock`
    enum Phase { case idle, pending }

    /// What to do with the result; runs on the event thread, outside the lock.
    typealias Completion = @Sendable (TransferBox, TransferResult) -> Void

    let transport: any USBTransport
    /// The transport's own per-transfer memory (libusb: its `libusb_transfer`).
    package let native: UnsafeMutableRawPointer?
    /// For control transfers the first 8 bytes are the setup packet.
    @exclusivity(unchecked) package private(set) var buffer: UnsafeMutableRawBufferPointer
    private let lock = Mutex<(phase: Phase, cancelRequested: Bool)>((.idle, false))
    @exclusivity(unchecked) private var completion: Completion?
    /// Names the transfer in errors, e.g. `bulk IN 0x81 on /dev/bus/usb/001/002`.
    var operation = ""
    /// A ``TransferQueue``'s box: its completion as the device wraps it
    /// (made once, set before the box is first handed out) and, under the
    /// queue's lock, the result of its last submission until it is taken.
    @exclusivity(unchecked) var queueCompletion: Completion?
    @exclusivity(unchecked) var queueResult: Result<Int, USBError>?
    /// Its place in its device's pending transfers (under the device's
    /// lock; -1: not pending). See `PendingTransfers`.
    @exclusivity(unchecked) var pendingIndex = -1
    /// The control pipe's reused box: the request it carries now (type,
    /// request, value, index), named only if it fails.
    var controlSetup: (requestType: UInt8, request: UInt8, value: UInt16, index: UInt16)?

    init(capacity: Int, transport: any USBTransport) throws(USBError) {
        native = try transport.makeNative()
        self.transport = transport
        buffer = .allocate(byteCount: max(capacity, 1), alignment: 16)
    }

    deinit {
        transport.freeNative(native)
        buffer.deallocate()
    }

    /// What the transport carries to identify the box in its report.
    package var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// The transport's report of a submission's end (once per submission):
    /// balances the +1 taken at submit.
    package static func transportCompleted(_ opaque: UnsafeMutableRawPointer, status: TransferStatus, length: Int) {
        let box = Unmanaged<TransferBox>.fromOpaque(opaque).takeRetainedValue()
        CompletionThread.run { box.completed(status, length) }
    }

    /// Grows the buffer (idle only).
    func reserve(_ capacity: Int) {
        guard capacity > buffer.count else { return }
        buffer.deallocate()
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }

    /// Runs `body` with `memory` as the box's buffer instead of its own
    /// (idle only): a synchronous transfer that libusb reads from or fills
    /// in the caller's memory, with no copy. `body` must not return before
    /// the completion of whatever it submitted (a synchronous call waits
    /// for it, even after a timeout or a removal), so libusb never holds the
    /// memory after it.
    func lending<R, E: Error>(_ memory: UnsafeMutableRawBufferPointer, _ body: () throws(E) -> R) throws(E) -> R {
        let own = buffer
        buffer = memory
        defer { buffer = own }
        return try body()
    }

    /// Fills and submits (idle only). On failure the box stays idle.
    func submit(type: USBEndpoint.TransferType, endpoint: UInt8, length: Int, timeout: Duration?,
                zeroLengthPacket: Bool, completion: @escaping Completion) throws(USBError) {
        self.completion = completion
        let ms = milliseconds(timeout)
        _ = Unmanaged.passRetained(self)
        // The lock is held across the submission: a cancel() from another
        // thread either finds the box idle (its owner re-checks after
        // submitting) or pending and really in flight, never in between,
        // where libusb would answer NOT_FOUND and the cancel would be lost.
        // A completion that comes at once waits for the lock and finds the
        // box pending.
        let submitted = lock.withLock { s -> USBError? in
            do throws(USBError) {
                try transport.submit(self, type: type, endpoint: endpoint, length: length,
                                     timeoutMilliseconds: ms, zeroLengthPacket: zeroLengthPacket)
                s = (.pending, false)
                return nil
            } catch {
                return error
            }
        }
        if let submitted {
            Unmanaged.passUnretained(self).release()
            self.completion = nil
            throw submitted.naming(operation)
        }
    }

    /// Asks libusb to cancel if pending; the completion reports the outcome.
    func cancel() {
        let pending = lock.withLock { s -> Bool in
            guard s.phase == .pending, !s.cancelRequested else { return false }
            s.cancelRequested = true
            return true
        }
        if pending { transport.cancel(self) }
    }

    /// Once per submission, from ``transportCompleted(_:status:length:)``.
    private func completed(_ status: TransferStatus, _ length: Int) {
        lock.withLock { $0.phase = .idle }
        let action = completion
        completion = nil
        guard let action else { return }
        action(self, TransferResult(status: status, length: max(0, length)))
    }

    /// The last timeout converted, kept because a reused box is usually
    /// submitted with the same one (the conversion is 128-bit arithmetic).
    @exclusivity(unchecked) private var lastTimeout: (Duration?, UInt32) = (nil, 0)

    /// libusb's timeout: whole milliseconds, at least 1; 0 (none) for nil or
    /// not positive.
    private func milliseconds(_ timeout: Duration?) -> UInt32 {
        if timeout == lastTimeout.0 { return lastTimeout.1 }
        let ms: UInt32 = if let timeout, timeout > .zero { UInt32(clamping: max(timeout.milliseconds, 1)) } else { 0 }
        lastTimeout = (timeout, ms)
        return ms
    }
}

/// How one submission ended.
package struct TransferResult: Sendable {
    let status: TransferStatus
    /// Bytes transferred (for control transfers: data bytes after the setup).
    let length: Int
    var completed: Bool { status == .completed }
}

/// A wait for a synchronous transfer's outcome (or a close), finished by
/// whichever thread handles the completion; reusable after ``reset()``.
package final class TransferWaiter: @unchecked Sendable {  // `outcome`: written before `done` is released, read after it is acquired
    private let semaphore = DispatchSemaphore(value: 0)
    private let done = Atomic<Bool>(false)
    private var outcome: Result<Int, USBError>?
    /// libusb's `completed` argument (``USBContext/pump(until:)``).
    package let completedFlag = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    init() { completedFlag.initialize(to: 0) }
    deinit { completedFlag.deallocate() }

    package var isFinished: Bool { done.load(ordering: .acquiring) }

    /// Ready for another wait (after `wait()` returned: its signal is taken).
    func reset() {
        outcome = nil
        done.store(false, ordering: .relaxed)
        completedFlag.pointee = 0
    }

    func finish(_ r: Result<Int, USBError>) {
        outcome = r
        done.store(true, ordering: .releasing)
        completedFlag.pointee = 1
        semaphore.signal()
    }

    func wait() -> Result<Int, USBError> {
        semaphore.wait()
        // Acquire: pairs with `finish`'s release, so `outcome` is visible (and
        // the hand-over is one ThreadSanitizer sees).
        _ = done.load(ordering: .acquiring)
        return outcome!
    }
}

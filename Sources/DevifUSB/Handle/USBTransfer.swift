import CLibUSB
import DevifCore
import Dispatch
import Synchronization

/// One libusb transfer and its buffer, reused across submissions.
///
/// The state is explicit (as in nusb) so that completion, cancellation and
/// release never race:
/// - `idle`: not submitted; the owner may fill and submit it, or free it.
/// - `pending`: libusb owns it; only the completion callback moves it on.
///   A cancel request while pending asks libusb to cancel (the completion
///   still comes, once).
/// - `abandoned`: its owner went away while it was pending; the completion
///   frees it instead of delivering.
///
/// While pending, the box holds a +1 reference on itself (passed to libusb as
/// `user_data`), so it outlives any owner until its completion.
final class TransferBox: @unchecked Sendable {  // fields are written only in `idle` by the owner, or under `lock`
    enum Phase { case idle, pending, abandoned }

    /// What to do with the result; runs on the event thread, outside the lock.
    typealias Completion = @Sendable (TransferBox, TransferResult) -> Void

    let transfer: UnsafeMutablePointer<libusb_transfer>
    /// For control transfers the first 8 bytes are the setup packet.
    private(set) var buffer: UnsafeMutableRawBufferPointer
    private let lock = Mutex<(phase: Phase, cancelRequested: Bool)>((.idle, false))
    private var completion: Completion?
    /// Names the transfer in errors, e.g. `bulk IN 0x81 on /dev/bus/usb/001/002`.
    var operation = ""

    init(capacity: Int) throws(USBError) {
        guard let t = LibUSB.allocTransfer() else {
            throw USBError(libusbCode: LIBUSB_ERROR_NO_MEM.rawValue, operation: "libusb_alloc_transfer")
        }
        transfer = t
        buffer = .allocate(byteCount: max(capacity, 1), alignment: 16)
    }

    deinit {
        LibUSB.freeTransfer(transfer)
        buffer.deallocate()
    }

    /// Grows the buffer (idle only).
    func reserve(_ capacity: Int) {
        guard capacity > buffer.count else { return }
        buffer.deallocate()
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }

    /// Fills and submits (idle only). On failure the box stays idle.
    func submit(handle: OpaquePointer, type: UInt8, endpoint: UInt8, length: Int, timeout: Duration?,
                zeroLengthPacket: Bool, completion: @escaping Completion) throws(USBError) {
        self.completion = completion
        LibUSB.fillTransfer(transfer, handle: handle, type: type, endpoint: endpoint,
                            buffer: buffer.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            length: Int32(length), timeoutMilliseconds: milliseconds(timeout),
                            zeroLengthPacket: zeroLengthPacket, callback: transferCompleted,
                            userData: Unmanaged.passRetained(self).toOpaque())
        // The lock is held across the submission: a cancel() from another
        // thread either finds the box idle (its owner re-checks after
        // submitting) or pending and really in flight, never in between,
        // where libusb would answer NOT_FOUND and the cancel would be lost.
        // A completion that comes at once waits for the lock and finds the
        // box pending.
        let submitted = lock.withLock { s -> USBError? in
            do throws(USBError) {
                try LibUSB.submitTransfer(transfer)
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
        if pending { LibUSB.cancelTransfer(transfer) }
    }

    /// The owner is gone: cancel, and let the completion drop the box.
    /// Returns false if it was idle (the caller may simply release it).
    @discardableResult
    func abandon() -> Bool {
        let pending = lock.withLock { s -> Bool in
            guard s.phase == .pending else { return false }
            s.phase = .abandoned
            return true
        }
        if pending { LibUSB.cancelTransfer(transfer) }
        return pending
    }

    /// Called by libusb on the event thread, once per submission.
    fileprivate func completed() {
        let t = transfer.pointee
        let deliver = lock.withLock { s -> Bool in
            defer { s.phase = .idle }
            return s.phase == .pending
        }
        let action = completion
        completion = nil
        guard deliver, let action else { return }
        let length = Int(max(0, min(t.actual_length, t.length)))
        action(self, TransferResult(status: t.status, length: length))
    }

    /// The last timeout converted, kept because a reused box is usually
    /// submitted with the same one (the conversion is 128-bit arithmetic).
    private var lastTimeout: (Duration?, UInt32) = (nil, 0)

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
struct TransferResult: Sendable {
    let status: libusb_transfer_status
    /// Bytes transferred (for control transfers: data bytes after the setup).
    let length: Int
    var completed: Bool { status == LIBUSB_TRANSFER_COMPLETED }
}

/// libusb's completion callback: balances the +1 taken at submit.
private let transferCompleted: LibUSB.TransferCallback = { transfer in
    guard let userData = transfer?.pointee.user_data else { return }
    let box = Unmanaged<TransferBox>.fromOpaque(userData).takeRetainedValue()
    CompletionThread.run { box.completed() }
}

/// A wait for a synchronous transfer's outcome (or a close), finished by
/// whichever thread handles the completion; reusable after ``reset()``.
final class TransferWaiter: @unchecked Sendable {  // `outcome`: written before `done` is released, read after it is acquired
    private let semaphore = DispatchSemaphore(value: 0)
    private let done = Atomic<Bool>(false)
    private var outcome: Result<Int, USBError>?
    /// libusb's `completed` argument (``USBContext/pump(until:)``).
    let completedFlag = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    init() { completedFlag.initialize(to: 0) }
    deinit { completedFlag.deallocate() }

    var isFinished: Bool { done.load(ordering: .acquiring) }

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

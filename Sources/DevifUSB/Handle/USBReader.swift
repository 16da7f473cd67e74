import CLibUSB
import DevifCore
import Dispatch
import Synchronization

/// Push-mode reading of one IN endpoint: `transfers` transfers in flight,
/// each handed to a handler **on the event thread** the moment it completes
/// and resubmitted as soon as the handler returns, as a raw libusb program
/// does it. This is the fast path for streaming (no thread hop, no copy, no
/// allocation per chunk); ``USBInStream`` is the pull form for readers that
/// want chunks as arrays on their own thread.
///
/// The handler sees the bytes only while it runs; it must not block (every
/// transfer of every device completes on that thread) and returns whether
/// to go on. The reader runs until ``stop()``, the handler's `.stop`, the
/// device's removal (``USBError/deviceRemoved``), its closing, or the first
/// transfer error; ``wait()`` / ``finished()`` then give the reason once
/// every transfer is back from libusb.
package final class USBReader: Sendable {
    package enum Action: Sendable { case `continue`, stop }
    package typealias Handler = @Sendable (UnsafeRawBufferPointer) -> Action

    /// The endpoint read.
    package let endpoint: UInt8
    /// Bytes handed to the handler so far (updated on the event thread).
    package var bytesReceived: UInt64 { bytes.load(ordering: .relaxed) }

    private struct State {
        var inFlight = 0
        var stopping = false
        var end: USBError?
        var finished = false
        /// Each box's completion, made once; cleared at the end (they
        /// reference the reader, which keeps it alive while it runs).
        var completions: [ObjectIdentifier: TransferBox.Completion] = [:]
        var waiters: [StreamWaiter] = []
    }

    private let core: USBDeviceCore
    private let ep: USBDevice.Endpoint
    private let transferSize: Int
    private let timeout: Duration?
    private let handler: Handler
    private let boxes: [TransferBox]
    private let state = Mutex(State())
    private let bytes = Atomic<UInt64>(0)

    #if DEBUG
    /// Lab tests only (debug builds): called on the event thread when a
    /// completion has decided to resubmit, just before it does: a stop()
    /// arriving there must still end the reader.
    package let beforeResubmit = CallbackSlot<Void>()
    #endif

    init(core: USBDeviceCore, endpoint: USBDevice.Endpoint, transferSize: Int, transfers: Int,
         timeout: Duration?, handler: @escaping Handler) throws(USBError) {
        self.core = core
        self.ep = endpoint
        self.endpoint = endpoint.address
        self.transferSize = transferSize
        self.timeout = timeout
        self.handler = handler
        let boxes = try TransferBox.streamSet(transfers: transfers, keeping: transfers, of: transferSize,
                                              transport: core.transport, operation: "reading " + core.describe(endpoint))
        self.boxes = boxes
        state.withLock { s in
            for box in boxes {
                s.completions[ObjectIdentifier(box)] = core.wrap(box) { [self] box, result in completed(box, result) }
            }
        }
        for box in boxes {
            let go = state.withLock { s -> TransferBox.Completion? in
                guard s.end == nil, !s.stopping else { return nil }
                s.inFlight += 1
                return s.completions[ObjectIdentifier(box)]
            }
            guard let go else { break }
            submit(box, go)
        }
        // Nothing went out (the first submission failed): report it here.
        if let error = state.withLock({ $0.inFlight == 0 ? $0.end : nil }) {
            finish()
            throw error
        }
    }

    private func submit(_ box: TransferBox, _ completion: @escaping TransferBox.Completion) {
        let type = core.transferType(ep)
        do throws(USBError) {
            try core.submit(box, type: type, endpoint: ep.address, length: transferSize, timeout: timeout,
                            zlp: false, wrapped: completion)
            // stop() from another thread may have come after the check that
            // let this box go out, and found it idle: cancel it here, or it
            // would stay in flight (with no timeout, for ever) and wait()
            // would not return.
            if state.withLock({ $0.stopping }) { box.cancel() }
        } catch {
            let last = state.withLock { s -> Bool in
                s.inFlight -= 1
                if s.end == nil, !s.stopping { s.end = error }
                s.stopping = true
                return s.inFlight == 0
            }
            for b in boxes { b.cancel() }
            if last { finish() }
        }
    }

    /// On the event thread: hand the bytes over, then resubmit the same box.
    private func completed(_ box: TransferBox, _ result: Result<Int, USBError>) {
        var again = false
        switch result {
        case .success(let n):
            if !state.withLock({ $0.stopping }) {
                bytes.add(UInt64(n), ordering: .relaxed)
                again = handler(UnsafeRawBufferPointer(rebasing: box.buffer[0..<n])) == .continue
            }
        case .failure(let error):
            state.withLock { s in
                // A cancel after stop() is not an error.
                if s.end == nil, !s.stopping { s.end = error }
            }
        }
        let next = state.withLock { s -> TransferBox.Completion? in
            if !again || s.end != nil { s.stopping = true }
            guard !s.stopping else { s.inFlight -= 1; return nil }
            return s.completions[ObjectIdentifier(box)]
        }
        if let next {
            #if DEBUG
            beforeResubmit.call(())
            #endif
            submit(box, next)
            return
        }
        // Ending: cancel the rest; the last one back finishes.
        for b in boxes { b.cancel() }
        if state.withLock({ $0.inFlight == 0 }) { finish() }
    }

    private func finish() {
        let woken = state.withLock { s -> [StreamWaiter] in
            guard !s.finished else { return [] }
            s.finished = true
            s.completions = [:]
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in woken { w.wake() }
    }

    /// Stops reading: transfers in flight are cancelled; ``wait()`` returns
    /// once they are back. Idempotent; safe from the handler too (or return
    /// `.stop` there).
    package func stop() {
        let idle = state.withLock { s -> Bool in
            s.stopping = true
            return s.inFlight == 0
        }
        for b in boxes { b.cancel() }
        if idle { finish() }
    }

    /// Blocks until every transfer is back; returns what ended the reader
    /// (nil: ``stop()`` or the handler's `.stop`). Not from the event thread.
    @discardableResult
    package func wait() -> USBError? {
        StreamWaiter.block(parkUntilFinished)
        return state.withLock { $0.end }
    }

    /// The async form of ``wait()``.
    @discardableResult
    package func finished() async -> USBError? {
        await StreamWaiter.suspend(parkUntilFinished)
        return state.withLock { $0.end }
    }

    /// Parks `waiter` until every transfer is back; false if they are.
    private func parkUntilFinished(_ waiter: StreamWaiter) -> Bool {
        state.withLock { s -> Bool in
            guard !s.finished else { return false }
            s.waiters.append(waiter)
            return true
        }
    }
}

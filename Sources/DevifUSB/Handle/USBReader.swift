import CLibUSB
import DevifCore
import Dispatch
import Synchronization

/// Push-mode reading of one IN endpoint: `transfers` transfers in flight,
/// each handed to a handler **on the event thread** the moment it completes
/// and resubmitted as soon as the handler returns, as a raw libusb program
/// does it. This is the fast path for streaming (no thread hop, no copy, no
/// allocation per chunk); ``USBInStream`` is the pull form for readers that
/// want chunks on their own thread. An adapter on a ``TransferQueue``: its
/// completion hook takes each transfer back, in order, and resubmits it.
///
/// The handler sees the bytes only while it runs; it must not block (every
/// transfer of every device completes on that thread) and returns whether
/// to go on. The reader runs until ``stop()``, the handler's `.stop`, the
/// device's removal (``USBError/deviceRemoved``), its closing, or the first
/// transfer error; ``wait()`` then gives the reason once every transfer is
/// back from libusb.
package final class USBReader: Sendable {
    package enum Action: Sendable { case `continue`, stop }
    package typealias Handler = @Sendable (UnsafeRawBufferPointer) -> Action

    /// The endpoint read.
    package let endpoint: UInt8
    /// Bytes handed to the handler so far (updated on the event thread).
    package var bytesReceived: UInt64 { bytes.load(ordering: .relaxed) }

    private struct State {
        /// Submitted and not yet handled for the last time.
        var inFlight = 0
        var stopping = false
        var end: USBError?
        var finished = false
        var waiters: [StreamWaiter] = []
    }

    private let queue: TransferQueue
    private let handler: Handler
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
        self.endpoint = endpoint.address
        self.handler = handler
        let operation = "reading " + core.describe(endpoint)
        try TransferBox.checkStreamShape(transfers: transfers, size: transferSize, operation: operation)
        queue = try TransferQueue(core: core, endpoint: endpoint, depth: transfers, transferSize: transferSize,
                                  timeout: timeout, operation: operation)
        // Strong: a running reader lives until its last transfer is back
        // (finish() clears the hook), whoever holds it.
        queue.setCompletionHook { [self] _ in completed() }
        for _ in 0..<transfers {
            guard state.withLock({ s -> Bool in
                guard !s.stopping else { return false }
                s.inFlight += 1
                return true
            }) else { break }
            let box: TransferBox?
            do throws(USBError) { box = try queue.idleBuffer() } catch {
                ended(failing: error)
                break
            }
            submit(box!)
        }
        // Nothing went out (the first submission failed): report it here.
        if let error = state.withLock({ $0.inFlight == 0 ? $0.end : nil }) {
            finish()
            throw error
        }
    }

    private func submit(_ box: TransferBox) {
        do throws(USBError) {
            try queue.submit(box, length: queue.transferSize)
        } catch {
            // Refused after stop() (the queue is cancelled): not an error.
            ended(failing: queue.isCancelled ? nil : error)
        }
    }

    /// The queue's hook, on the event thread: each transfer back in order is
    /// handed over, then resubmitted.
    private func completed() {
        while let done = queue.takeCompleted() {
            var again = false
            switch done.result {
            case .success(let n):
                if !state.withLock({ $0.stopping }) {
                    bytes.add(UInt64(n), ordering: .relaxed)
                    again = handler(UnsafeRawBufferPointer(rebasing: done.box.buffer[0..<n])) == .continue
                }
            case .failure(let error):
                ended(failing: error, box: done.box)
                continue
            }
            if again, !state.withLock({ $0.stopping || $0.end != nil }) {
                #if DEBUG
                beforeResubmit.call(())
                #endif
                submit(done.box)
            } else {
                ended(failing: nil, box: done.box)
            }
        }
    }

    /// One transfer is done for good (`box`, if any, goes back to the queue
    /// idle); `error` (the first, unless stopping) ends the reader. The rest
    /// are cancelled; the last one back finishes.
    private func ended(failing error: USBError?, box: TransferBox? = nil) {
        if let box { queue.recycle(box) }
        let last = state.withLock { s -> Bool in
            s.inFlight -= 1
            // A cancel after stop() is not an error.
            if let error, s.end == nil, !s.stopping { s.end = error }
            s.stopping = true
            return s.inFlight == 0
        }
        queue.cancelAll()
        if last { finish() }
    }

    private func finish() {
        let woken = state.withLock { s -> [StreamWaiter] in
            guard !s.finished else { return [] }
            s.finished = true
            defer { s.waiters = [] }
            return s.waiters
        }
        queue.setCompletionHook(nil)
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
        queue.cancelAll()
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
    package func wait() async -> USBError? {
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

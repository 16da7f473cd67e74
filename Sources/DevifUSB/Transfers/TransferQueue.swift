import DevifCore
import Dispatch
import Synchronization

/// One endpoint's queue of transfers, in the spirit of nusb's `Endpoint`:
/// buffers go in with ``submit(_:length:zeroLengthPacket:)`` and come back,
/// in the order they went in, from ``nextComplete(timeout:)`` (blocking) or
/// ``nextComplete()`` (async). At most `depth` buffers exist; the caller
/// gets an idle one with ``idleBuffer()`` (nil: all are in flight or not yet
/// taken back, wait for a completion first: that is the backpressure).
///
/// Each buffer is a ``TransferBox``: idle, pending or abandoned. Cancelling
/// asks the transport; every submission still completes once, so dropping the
/// queue never races a completion (the boxes' +1 keeps them alive).
package final class TransferQueue: Sendable {
    /// A buffer back from the device, and how its transfer ended.
    package struct Completion: @unchecked Sendable {  // the box is the queue's; only its owner reads it
        package let box: TransferBox
        package let result: Result<Int, USBError>
    }

    private struct State {
        var idle: [TransferBox] = []
        var made = 0
        /// Submitted, oldest first (`head` skips those already taken).
        var inOrder: [TransferBox] = []
        var head = 0
        var results: [ObjectIdentifier: Result<Int, USBError>] = [:]
        var waiter: StreamWaiter?
        /// How many completions the parked waiter wants (see `nextComplete`).
        var wakeAt = 1
        var cancelled = false
        /// Each box's completion, made with the box: a submission allocates nothing.
        var completions: [ObjectIdentifier: TransferBox.Completion] = [:]

        var pending: Int { inOrder.count - head }
        var oldestDone: Bool {
            head < inOrder.count && results[ObjectIdentifier(inOrder[head])] != nil
        }
        /// The oldest is done, and so are `count` of those pending (or all of them).
        func ready(_ count: Int) -> Bool { oldestDone && (results.count >= count || results.count == pending) }
    }

    let core: USBDeviceCore
    let endpoint: USBDevice.Endpoint
    let depth: Int
    let transferSize: Int
    private let timeout: Duration?
    /// Names the queue's transfers in errors.
    package let operation: String
    private let state = Mutex(State())

    init(core: USBDeviceCore, endpoint: USBDevice.Endpoint, depth: Int, transferSize: Int, timeout: Duration?,
         operation: String) throws(USBError) {
        try TransferBox.checkStreamShape(transfers: depth, size: transferSize, operation: operation)
        self.core = core
        self.endpoint = endpoint
        self.depth = depth
        self.transferSize = transferSize
        self.timeout = timeout
        self.operation = operation
    }

    deinit {
        // Whatever is still in flight is cancelled; its completion frees it.
        for box in state.withLock({ $0.inOrder }) { box.abandon() }
    }

    /// Transfers submitted and not yet taken back.
    package var pending: Int { state.withLock { $0.pending } }

    /// An idle buffer of ``transferSize`` bytes, made on first need; nil when
    /// all `depth` are submitted or completed but not taken back.
    package func idleBuffer() throws(USBError) -> TransferBox? {
        let (box, make) = state.withLock { s -> (TransferBox?, Bool) in
            if let box = s.idle.popLast() { return (box, false) }
            guard s.made < depth else { return (nil, false) }
            s.made += 1
            return (nil, true)
        }
        if let box { return box }
        guard make else { return nil }
        let made = try TransferBox(capacity: transferSize, transport: core.transport)
        made.operation = operation
        // Weak: the queue holds its completions. A dropped queue abandons
        // its boxes, whose completions then deliver nothing anyway.
        let completion = core.wrap(made) { [weak self] box, result in self?.completed(box, result) }
        state.withLock { $0.completions[ObjectIdentifier(made)] = completion }
        return made
    }

    /// Gives a buffer taken with ``idleBuffer()`` or ``nextComplete(timeout:)`` back, unused.
    package func recycle(_ box: TransferBox) { state.withLock { $0.idle.append(box) } }

    /// Submits `length` bytes of `box` (filled by the caller for OUT).
    /// On failure the box is idle again (back in the queue) and the error is thrown.
    package func submit(_ box: TransferBox, length: Int, zeroLengthPacket: Bool = false) throws(USBError) {
        let completion = state.withLock { s -> TransferBox.Completion? in
            if s.cancelled { return nil }
            s.inOrder.append(box)
            return s.completions[ObjectIdentifier(box)]
        }
        guard let completion else {
            recycle(box)
            throw USBError.cancelled(operation)
        }
        do throws(USBError) {
            try core.submit(box, type: core.transferType(endpoint), endpoint: endpoint.address, length: length,
                            timeout: timeout, zlp: zeroLengthPacket, wrapped: completion)
        } catch {
            state.withLock { s in
                if let i = s.inOrder.lastIndex(where: { $0 === box }) { s.inOrder.remove(at: i) }
                s.idle.append(box)
            }
            throw error
        }
    }

    private func completed(_ box: TransferBox, _ result: Result<Int, USBError>) {
        let woken = state.withLock { s -> StreamWaiter? in
            s.results[ObjectIdentifier(box)] = result
            guard s.waiter != nil, s.ready(s.wakeAt) else { return nil }
            defer { s.waiter = nil }
            return s.waiter
        }
        woken?.wake()
    }

    /// The oldest submission, once it completed: its box (the caller reads it,
    /// then ``recycle(_:)``s it or submits it again) and its result. nil when
    /// nothing is pending.
    package func takeCompleted() -> Completion? {
        state.withLock { s -> Completion? in
            guard s.oldestDone else { return nil }
            let box = s.inOrder[s.head]
            s.head += 1
            if s.head == s.inOrder.count {
                s.inOrder.removeAll(keepingCapacity: true)
                s.head = 0
            }
            return Completion(box: box, result: s.results.removeValue(forKey: ObjectIdentifier(box))!)
        }
    }

    /// Parks `waiter` until the oldest submission and `count` in all (or
    /// every pending one) completed; false if they have (or nothing is pending).
    private func park(_ waiter: StreamWaiter, _ count: Int) -> Bool {
        state.withLock { s -> Bool in
            guard s.pending > 0, !s.ready(count) else { return false }
            s.waiter = waiter
            s.wakeAt = count
            return true
        }
    }

    /// Waits (blocking the thread, at most `timeout`; nil: no limit) for the
    /// oldest submission to complete, and returns it (``takeCompleted()``
    /// takes any others that are done). nil: nothing pending. Not from a
    /// completion.
    ///
    /// `batch`: wait until that many are done (or all pending are), so a
    /// writer held back by a full queue wakes once per `batch` completions
    /// instead of once per transfer (a wake-up is a system call and a
    /// context switch on the event thread's side).
    /// - Throws: ``USBError/timeout`` when it did not complete in time (it stays pending).
    package func nextComplete(timeout: Duration?, batch: Int = 1) throws(USBError) -> Completion? {
        while true {
            if let done = takeCompleted() { return done }
            if pending == 0 { return nil }
            let semaphore = DispatchSemaphore(value: 0)
            guard park(.blocking(semaphore), batch) else { continue }
            let deadline: DispatchTime = timeout.map { .now() + .nanoseconds(Int(clamping: $0.nanoseconds)) } ?? .distantFuture
            if semaphore.wait(timeout: deadline) == .timedOut {
                let stillParked = state.withLock { s -> Bool in
                    guard s.waiter != nil else { return false }
                    s.waiter = nil
                    return true
                }
                if stillParked { throw USBError.timeoutError(operation) }
            }
        }
    }

    /// The async form of ``nextComplete(timeout:)`` without a timeout. Task
    /// cancellation cancels what is in flight (the completions still come,
    /// and this returns the oldest).
    package func nextComplete(batch: Int = 1) async -> Completion? {
        while true {
            if let done = takeCompleted() { return done }
            if pending == 0 { return nil }
            await withTaskCancellationHandler {
                await StreamWaiter.suspend { park($0, batch) }
            } onCancel: {
                cancelAll()
            }
        }
    }

    /// Cancels every submission in flight and refuses new ones; their
    /// completions still come (``nextComplete(timeout:)`` takes them).
    package func cancelAll() {
        let inFlight = state.withLock { s -> ArraySlice<TransferBox> in
            s.cancelled = true
            return s.inOrder[s.head...]
        }
        for box in inFlight { box.cancel() }
    }
}

import DevifCore
import Dispatch
import Synchronization

/// One endpoint's queue of transfers, in the spirit of nusb's `Endpoint`:
/// buffers go in with ``submit(_:length:zeroLengthPacket:)`` and come back,
/// in the order they went in, from ``nextComplete(timeout:batch:)``
/// (blocking) or ``nextComplete(batch:onTaskCancel:)`` (async). At most
/// `depth` buffers exist; the caller gets an idle one with ``idleBuffer()``
/// (nil: all are in flight or not yet taken back, wait for a completion
/// first: that is the backpressure).
///
/// Each buffer is a ``TransferBox``: idle or pending. Cancelling asks the
/// transport; every submission still completes once, so dropping the queue
/// never races a completion: the boxes' +1 keeps them alive, the device's
/// bookkeeping sees each completion, and the queue's part, which holds the
/// queue weakly, finds it gone (the transfer is abandoned).
///
/// Every transfer of devif's that is not a one-off runs on a queue: the OUT
/// stream (``USBOutStream``), the IN stream (``USBInStream``, which keeps
/// spare buffers going out from a ``CompletionHook``) and the push reader
/// (``USBReader``, whose hook hands each buffer over and resubmits it).
package final class TransferQueue: Sendable {
    /// A buffer back from the device, and how its transfer ended.
    package struct Completion: @unchecked Sendable {  // the box is the queue's; only its owner reads it
        package let box: TransferBox
        package let result: Result<Int, USBError>
    }

    /// What the queue's owner does at each completion, on the event thread,
    /// before any waiter is woken (an IN stream puts a spare buffer out
    /// first; a push reader hands the bytes over and resubmits). It gets the
    /// result for what it says only: a waiter may take the box meanwhile.
    package typealias CompletionHook = @Sendable (Result<Int, USBError>) -> Void

    /// What an async wait does when its task is cancelled.
    package enum OnTaskCancel: Sendable {
        /// Cancel every transfer in flight (their completions still come, and
        /// the wait returns the oldest): a single transfer's await.
        case cancelTransfers
        /// Stop waiting and throw ``USBError/cancelled``; the transfers go on
        /// (a stream's reader that gave up).
        case stopWaiting
    }

    private enum Woken {
        case none, one(StreamWaiter), many([StreamWaiter])
        func wake() {
            switch self {
            case .none: break
            case .one(let w): w.wake()
            case .many(let ws): for w in ws { w.wake() }
            }
        }
    }

    private struct Parked {
        let id: UInt64
        let waiter: StreamWaiter
        /// Woken once the oldest and this many in all (or every pending one) are done.
        let count: Int
    }

    private struct State {
        var idle: [TransferBox] = []
        var made = 0
        /// Submitted, oldest first (`head` skips those already taken).
        var inOrder: [TransferBox] = []
        var head = 0
        /// Submitted boxes whose completion came and that are not taken yet
        /// (each holds its result in `queueResult`).
        var done = 0
        var parked: [Parked] = []
        var nextWaiter: UInt64 = 0
        /// Semaphores of finished blocking waits, each at zero, for the next ones.
        var semaphores: [DispatchSemaphore] = []
        /// A class, not the closure: a closure returned through the lock's
        /// generic body is re-abstracted, which allocates, at each completion.
        var hook: Hook?

        var pending: Int { inOrder.count - head }
        var oldestDone: Bool {
            head < inOrder.count && inOrder[head].queueResult != nil
        }
        /// The oldest is done, and so are `count` of those pending (or all of them).
        func ready(_ count: Int) -> Bool { oldestDone && (done >= count || done == pending) }

        /// Takes the parked waiters whose wait is over.
        mutating func takeReady() -> Woken {
            guard !parked.isEmpty, oldestDone else { return .none }
            // One waiter is the common case: no array made per completion.
            if parked.count == 1 {
                guard ready(parked[0].count) else { return .none }
                return .one(parked.removeLast().waiter)
            }
            var woken: [StreamWaiter] = []
            var still: [Parked] = []
            for p in parked {
                if ready(p.count) { woken.append(p.waiter) } else { still.append(p) }
            }
            parked = still
            return .many(woken)
        }

        mutating func unpark(_ id: UInt64) -> StreamWaiter? {
            guard let i = parked.firstIndex(where: { $0.id == id }) else { return nil }
            return parked.remove(at: i).waiter
        }
    }

    let core: USBDeviceCore
    let endpoint: USBDevice.Endpoint
    let depth: Int
    let transferSize: Int
    private let timeout: Duration?
    /// Names the queue's transfers in errors.
    package let operation: String
    private let state = Mutex(State())
    /// Set by ``cancelAll()`` under `state`'s lock; read under it by a
    /// submission, and without it after each one.
    private let cancelledFlag = Atomic<Bool>(false)
    /// Held across a submission (not its completion, which takes only `state`).
    private let submitting = Mutex(())
    #if DEBUG
    /// Unit tests only: called in a submission once the box has its place in
    /// the order, before the transport gets it.
    package let afterOrdering = CallbackSlot<Void>()
    #endif

    init(core: USBDeviceCore, endpoint: USBDevice.Endpoint, depth: Int, transferSize: Int, timeout: Duration?,
         operation: String) throws(USBError) {
        // Its owner checked the shape the caller asked for (transfers in
        // flight); a stream's spares double it.
        guard (1...512).contains(depth), transferSize > 0 else {
            throw USBError.invalid("\(operation): a queue of \(depth) x \(transferSize) bytes")
        }
        self.core = core
        self.endpoint = endpoint
        self.depth = depth
        self.transferSize = transferSize
        self.timeout = timeout
        self.operation = operation
    }

    deinit {
        // Whatever is still in flight is cancelled (abandoned): its completion
        // still runs the device's part, which close() waits for, and frees it.
        for box in state.withLock({ $0.inOrder }) { box.cancel() }
    }

    /// Sets (or, with nil, clears) what runs at each completion. A hook that
    /// holds the queue's owner keeps it alive until cleared.
    package func setCompletionHook(_ hook: CompletionHook?) {
        let boxed = hook.map(Hook.init)
        state.withLock { $0.hook = boxed }
    }

    private final class Hook: Sendable {
        let run: CompletionHook
        init(_ run: @escaping CompletionHook) { self.run = run }
    }

    /// Transfers submitted and not yet taken back.
    package var pending: Int { state.withLock { $0.pending } }

    /// Threads and tasks waiting for a completion (tests see a reader parked).
    package var waiting: Int { state.withLock { $0.parked.count } }

    /// Transfers submitted whose completion has not come yet.
    package var inFlight: Int { state.withLock { $0.pending - $0.done } }

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
        let made: TransferBox
        do throws(USBError) {
            made = try TransferBox(capacity: transferSize, transport: core.transport)
        } catch {
            state.withLock { $0.made -= 1 }
            throw error
        }
        made.operation = operation
        // Weak: the queue holds its completions. A dropped queue cancels
        // its boxes, whose completions then deliver to nothing.
        let queue = WeakReference(self)
        let completion = core.wrap { box, result in queue.object?.completed(box, result) }
        // Made with the box, so a submission allocates nothing; set before
        // the box is handed out (the queue's lock publishes it).
        made.queueCompletion = completion
        return made
    }

    /// Gives a buffer taken with ``idleBuffer()`` or ``nextComplete(timeout:batch:)`` back, unused.
    package func recycle(_ box: TransferBox) { state.withLock { $0.idle.append(box) } }

    /// Submits `length` bytes of `box` (filled by the caller for OUT).
    /// On failure the box is idle again (back in the queue) and the error is
    /// thrown; after ``cancelAll()`` that error is ``USBError/cancelled``.
    package func submit(_ box: TransferBox, length: Int, zeroLengthPacket: Bool = false) throws(USBError) {
        // The order of `inOrder` must be the order the transport gets the
        // transfers in (the device fills them in that order): a stream
        // refills from the event thread and from its readers at once.
        try submitting.withLock { _ throws(USBError) in
            let accepted = state.withLock { s -> Bool in
                // Read under the lock, where cancelAll() sets it.
                if cancelledFlag.load(ordering: .relaxed) { return false }
                s.inOrder.append(box)
                return true
            }
            guard accepted, let completion = box.queueCompletion else {
                recycle(box)
                throw USBError.cancelled(operation)
            }
            #if DEBUG
            afterOrdering.call(())
            #endif
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
        // cancelAll() may have come after the check above and found the box
        // still idle (its cancel did nothing): cancel it now, or it would stay
        // in flight with nobody waiting for it.
        if cancelledFlag.load(ordering: .sequentiallyConsistent) { box.cancel() }
    }

    private func completed(_ box: TransferBox, _ result: Result<Int, USBError>) {
        let (hook, woken) = state.withLock { s -> (Hook?, Woken) in
            box.queueResult = result
            s.done += 1
            return (s.hook, s.takeReady())
        }
        // The owner's step first (a spare out to the device), then the wake-ups
        // (each one a system call on this, the event thread).
        hook?.run(result)
        woken.wake()
    }

    /// The oldest submission, once it completed: its box (the caller reads it,
    /// then ``recycle(_:)``s it or submits it again) and its result. nil when
    /// it has not completed or nothing is pending.
    package func takeCompleted() -> Completion? {
        state.withLock { s -> Completion? in
            guard s.oldestDone else { return nil }
            let box = s.inOrder[s.head]
            s.head += 1
            if s.head == s.inOrder.count {
                s.inOrder.removeAll(keepingCapacity: true)
                s.head = 0
            } else if s.head >= 64, s.head * 2 >= s.inOrder.count {
                // A stream's queue is never empty: drop what was taken now and
                // then, in place (removeFirst(_:) allocated a new buffer).
                let live = s.inOrder.count - s.head
                for i in 0..<live { s.inOrder[i] = s.inOrder[s.head + i] }
                s.inOrder.removeLast(s.head)
                s.head = 0
            }
            s.done -= 1
            defer { box.queueResult = nil }
            return Completion(box: box, result: box.queueResult!)
        }
    }

    /// A new waiter's id (taken before parking, so a task's cancellation
    /// handler can unpark it whenever it runs).
    private func waiterID() -> UInt64 {
        state.withLock { s in
            s.nextWaiter += 1
            return s.nextWaiter
        }
    }

    /// Parks `waiter` until the oldest submission and `count` in all (or
    /// every pending one) completed; false if they have, nothing is pending,
    /// or (`unlessCancelled`) the task is cancelled.
    private func park(_ waiter: StreamWaiter, id: UInt64, _ count: Int, unlessCancelled: Bool = false) -> Bool {
        state.withLock { s -> Bool in
            guard s.pending > 0, !s.ready(count) else { return false }
            // Under the lock: a cancellation handler that runs later finds the waiter parked.
            if unlessCancelled, Task.isCancelled { return false }
            s.parked.append(Parked(id: id, waiter: waiter, count: count))
            return true
        }
    }

    /// Waits (blocking the thread, at most `timeout`; nil: no limit) for the
    /// oldest submission to complete, and returns it (``takeCompleted()``
    /// takes any others that are done). nil: nothing pending. Not from a
    /// completion. Several threads and tasks may wait at once: each
    /// completion goes to one of them.
    ///
    /// `batch`: wait until that many are done (or all pending are), so a
    /// writer held back by a full queue wakes once per `batch` completions
    /// instead of once per transfer (a wake-up is a system call and a
    /// context switch on the event thread's side).
    /// - Throws: ``USBError/timeout`` when it did not complete in time (it stays pending).
    package func nextComplete(timeout: Duration?, batch: Int = 1) throws(USBError) -> Completion? {
        let deadline: DispatchTime = timeout.map { .now() + .nanoseconds(Int(clamping: $0.nanoseconds)) } ?? .distantFuture
        while true {
            if let done = takeCompleted() { return done }
            if pending == 0 { return nil }
            // StreamWaiter.block leaves it at zero: it goes back for the next wait.
            let (semaphore, id) = blockingWaiter()
            defer { state.withLock { $0.semaphores.append(semaphore) } }
            let timedOut = StreamWaiter.block(on: semaphore, until: deadline) { park($0, id: id, batch) } unpark: {
                state.withLock { $0.unpark(id) } != nil
            }
            if timedOut { throw USBError.timeoutError(operation) }
        }
    }

    /// A semaphore for a blocking wait (kept ones first: a warm wait
    /// allocates nothing) and the waiter's id.
    private func blockingWaiter() -> (DispatchSemaphore, UInt64) {
        let (kept, id) = state.withLock { s -> (DispatchSemaphore?, UInt64) in
            s.nextWaiter += 1
            return (s.semaphores.popLast(), s.nextWaiter)
        }
        return (kept ?? DispatchSemaphore(value: 0), id)
    }

    /// The async form of ``nextComplete(timeout:batch:)`` without a timeout;
    /// `onTaskCancel` says what the task's cancellation does.
    /// - Throws: ``USBError/cancelled`` only with `.stopWaiting`, when the task
    ///   was cancelled before a completion came.
    package func nextComplete(batch: Int = 1, onTaskCancel: OnTaskCancel = .cancelTransfers) async throws(USBError)
        -> Completion? {
        while true {
            if let done = takeCompleted() { return done }
            if pending == 0 { return nil }
            let stopWaiting = onTaskCancel == .stopWaiting
            if stopWaiting, Task.isCancelled { throw USBError.cancelled(operation) }
            let id = waiterID()
            await withTaskCancellationHandler {
                await StreamWaiter.suspend { park($0, id: id, batch, unlessCancelled: stopWaiting) }
            } onCancel: {
                if stopWaiting { state.withLock { $0.unpark(id) }?.wake() } else { cancelAll() }
            }
        }
    }

    /// Cancels every submission in flight and refuses new ones; their
    /// completions still come (``nextComplete(timeout:batch:)`` takes them).
    package func cancelAll() {
        let inFlight = state.withLock { s -> ArraySlice<TransferBox> in
            // Inside the lock, so a submission refuses or is among the cancels
            // below; and a submitter whose post-submission check misses this
            // store submitted before those cancels, which find it pending.
            cancelledFlag.store(true, ordering: .sequentiallyConsistent)
            return s.inOrder[s.head...]
        }
        for box in inFlight { box.cancel() }
    }

    /// Whether ``cancelAll()`` was called.
    package var isCancelled: Bool { cancelledFlag.load(ordering: .acquiring) }
}

import CLibUSB
import DevifCore
import Dispatch
import Synchronization

/// Continuous reading of one IN endpoint with several transfers in flight,
/// so the device is never left without a buffer to fill (the way to reach
/// full bulk speed). An adapter on a ``TransferQueue``.
///
/// Chunks are taken in the order the device sent them, with ``next(timeout:)``
/// (blocking) or ``next()`` (async). The stream's queue holds twice as many
/// buffers as it keeps in flight: a completed transfer is replaced at once,
/// on the event thread (the queue's completion hook), by a spare one (a
/// reader's wake-up latency does not leave the device idle); once the reader
/// holds every spare, the stream stops refilling, so a slow reader slows the
/// device down (it NAKs) instead of losing data. ``stop()`` cancels what is
/// in flight; so do removal and closing the device, which end the stream
/// with ``USBError/deviceRemoved`` or ``USBError/closed``. ``wait()`` waits
/// until every transfer is back, after which the endpoint is free for
/// another stream or read.
///
/// Dropping the last reference stops the stream, as ``stop()`` does: its
/// transfers are cancelled and come back on their own, so a forgotten
/// stream does not keep the endpoint's data. (To reuse the endpoint at once,
/// `stop()` and `wait()` first: they wait until the transfers are back.)
package final class USBInStream: Sendable {
    /// The endpoint read.
    package var endpoint: UInt8 { engine.endpoint }
    /// Bytes of every chunk taken so far.
    package var bytesReceived: UInt64 { engine.bytesReceived }

    // The queue's hook holds the engine weakly and chunks hold it strongly,
    // never this owner, so the owner's deinit runs when its holders let go,
    // however many transfers are in flight.
    private let engine: Engine

    #if DEBUG
    /// Lab tests only (debug builds): called when a refill has taken a spare
    /// buffer, just before submitting it: a stop() arriving there must still
    /// leave nothing in flight.
    package var beforeSubmit: CallbackSlot<Void> { engine.beforeSubmit }
    #endif

    /// Readers waiting for a chunk (tests see one parked).
    package var waitingReaders: Int { engine.waitingReaders }

    #if DEBUG
    /// Unit tests only: the queue's hook of the same name.
    package var afterOrdering: CallbackSlot<Void> { engine.queue.afterOrdering }
    #endif

    init(core: USBDeviceCore, endpoint: USBDevice.Endpoint, transferSize: Int, transfers: Int,
         timeout: Duration?) throws(USBError) {
        engine = try Engine(core: core, endpoint: endpoint, transferSize: transferSize, transfers: transfers,
                            timeout: timeout)
    }

    deinit { engine.stop() }

    /// Stops reading: transfers in flight are cancelled; readers get nil.
    /// Idempotent.
    package func stop() { engine.stop() }

    /// Blocks until the stream has ended (``stop()``, removal, closing, an
    /// error) and every transfer is back from libusb; returns what ended it
    /// (nil: ``stop()``). Not from the event thread.
    @discardableResult
    package func wait() -> USBError? { engine.wait() }

    /// The async form of ``wait()``.
    @discardableResult
    package func wait() async -> USBError? { await engine.waitOver() }

    /// The next chunk (at most the transfer size; a short one ends a device
    /// transfer), waiting at most `timeout` (nil: no limit); nil after
    /// ``stop()``.
    /// - Throws: ``USBError/timeout`` when nothing came in time, the error
    ///   that ended the stream (``USBError/deviceRemoved``, ``USBError/closed``,
    ///   a stall).
    package func next(timeout: Duration?) throws(USBError) -> [UInt8]? { try engine.nextChunk(timeout: timeout)?.array }

    /// The async form of ``next(timeout:)`` without a timeout; task
    /// cancellation ends the wait with ``USBError/cancelled`` (the stream
    /// keeps running).
    package func next() async throws(USBError) -> [UInt8]? { try await engine.nextChunk()?.array }

    /// The next chunk without a copy: it lends the transfer's own buffer,
    /// which goes back to the stream when the chunk is released (hold it
    /// only as long as needed: a stream whose every spare buffer is held
    /// stops reading). As ``next(timeout:)`` otherwise.
    package func nextChunk(timeout: Duration?) throws(USBError) -> USBInChunk? { try engine.nextChunk(timeout: timeout) }

    /// The async form of ``nextChunk(timeout:)``.
    package func nextChunk() async throws(USBError) -> USBInChunk? { try await engine.nextChunk() }
}

extension USBInStream {
    /// The running stream: its queue and how many of its transfers are out.
    /// See ``USBInStream``.
    final class Engine: Sendable {
        let endpoint: UInt8
        var bytesReceived: UInt64 { state.withLock { $0.bytes } }
        var waitingReaders: Int { queue.waiting + state.withLock { $0.starved.count } }

        private struct State {
            /// The stream's submissions whose completion has not come (at most `transfers`).
            var inFlight = 0
            var end: USBError?
            var stopped = false
            var bytes: UInt64 = 0
            /// Readers waiting while nothing is in flight (they hold every
            /// buffer), and those waiting in ``wait()``.
            var starved: [UInt64: StreamWaiter] = [:]
            var nextWaiter: UInt64 = 0
            var drainWaiters: [StreamWaiter] = []

            var isOver: Bool { (stopped || end != nil) && inFlight == 0 }
            /// The waiters to wake: starved readers always (they re-check),
            /// drain waiters once the stream is over.
            mutating func takeWoken() -> [StreamWaiter] {
                var woken = Array(starved.values)
                starved = [:]
                if isOver {
                    woken += drainWaiters
                    drainWaiters = []
                }
                return woken
            }
        }

        let queue: TransferQueue
        private let transfers: Int
        /// `State.stopped`, read without the lock before each chunk.
        private let stoppedFlag = Atomic<Bool>(false)
        private let state = Mutex(State())
        #if DEBUG
        let beforeSubmit = CallbackSlot<Void>()
        #endif

        init(core: USBDeviceCore, endpoint: USBDevice.Endpoint, transferSize: Int, transfers: Int,
             timeout: Duration?) throws(USBError) {
            self.endpoint = endpoint.address
            self.transfers = transfers
            // As many spares as transfers in flight.
            try TransferBox.checkStreamShape(transfers: transfers, size: transferSize,
                                             operation: "stream from " + core.describe(endpoint))
            queue = try TransferQueue(core: core, endpoint: endpoint, depth: 2 * transfers, transferSize: transferSize,
                                      timeout: timeout, operation: "stream from " + core.describe(endpoint))
            let engine = WeakReference(self)
            queue.setCompletionHook { result in engine.object?.completed(result) }
            refill()
            if let error = state.withLock({ $0.end }) {
                stop()
                throw error
            }
        }

        /// Submits idle buffers until `transfers` are in flight (or the
        /// stream ended). At start, from completions and when a reader gives
        /// a buffer back.
        private func refill() {
            while true {
                let reserved = state.withLock { s -> Bool in
                    guard s.end == nil, !s.stopped, s.inFlight < transfers else { return false }
                    s.inFlight += 1
                    return true
                }
                guard reserved else { return }
                let box: TransferBox?
                do throws(USBError) { box = try queue.idleBuffer() } catch {
                    unreserve(failing: error)
                    return
                }
                guard let box else {
                    // Every buffer is out or lent to a reader.
                    unreserve(failing: nil)
                    return
                }
                #if DEBUG
                beforeSubmit.call(())
                #endif
                do throws(USBError) {
                    try queue.submit(box, length: queue.transferSize)
                } catch {
                    // Refused after stop() or the end: not the stream's error.
                    unreserve(failing: queue.isCancelled ? nil : error)
                    return
                }
                // A reader that found nothing in flight may wait for this one.
                let woken = state.withLock { s -> [StreamWaiter] in
                    guard !s.starved.isEmpty else { return [] }
                    defer { s.starved = [:] }
                    return Array(s.starved.values)
                }
                for w in woken { w.wake() }
            }
        }

        /// Gives back a slot reserved by `refill` that did not go out; an
        /// error ends the stream.
        private func unreserve(failing error: USBError?) {
            let woken = state.withLock { s -> [StreamWaiter] in
                s.inFlight -= 1
                if let error, s.end == nil, !s.stopped { s.end = error }
                return s.end != nil ? s.takeWoken() : []
            }
            if error != nil { queue.cancelAll() }
            for w in woken { w.wake() }
        }

        /// The queue's hook, on the event thread, before readers are woken.
        private func completed(_ result: Result<Int, USBError>) {
            var ending = false
            let woken = state.withLock { s -> [StreamWaiter] in
                s.inFlight -= 1
                // The first error ends the stream (a cancel after stop is not an error).
                if case .failure(let error) = result, s.end == nil, !s.stopped {
                    s.end = error
                    ending = true
                }
                return s.isOver || ending ? s.takeWoken() : []
            }
            // The rest would wait for data (or forever, without a timeout).
            if ending { queue.cancelAll() }
            // The device first: a spare goes out before anyone is woken.
            refill()
            for w in woken { w.wake() }
        }

        func stop() {
            let woken = state.withLock { s -> [StreamWaiter] in
                s.stopped = true
                stoppedFlag.store(true, ordering: .releasing)
                return s.takeWoken()
            }
            queue.cancelAll()
            for w in woken { w.wake() }
        }

        func wait() -> USBError? {
            StreamWaiter.block(parkUntilOver)
            return state.withLock { $0.end }
        }

        func waitOver() async -> USBError? {
            await StreamWaiter.suspend(parkUntilOver)
            return state.withLock { $0.end }
        }

        /// Parks `waiter` until the stream is over; false if it already is.
        private func parkUntilOver(_ waiter: StreamWaiter) -> Bool {
            state.withLock { s -> Bool in
                guard !s.isOver else { return false }
                s.drainWaiters.append(waiter)
                return true
            }
        }

        /// A completion taken from the queue as the reader sees it: a chunk
        /// lending its buffer, nil after stop(), or the error that ended the stream.
        private func chunk(_ done: TransferQueue.Completion) throws(USBError) -> USBInChunk? {
            let taken = state.withLock { s -> Result<Int, USBError>? in
                if s.stopped { return nil }
                switch done.result {
                case .success(let n):
                    s.bytes += UInt64(n)
                    return .success(n)
                case .failure(let error): return .failure(s.end ?? error)
                }
            }
            guard case .success(let n) = taken else {
                queue.recycle(done.box)
                if case .failure(let error) = taken { throw error }
                return nil
            }
            return USBInChunk(engine: self, box: done.box, count: n)
        }

        /// The error that ended the stream, as a reader sees it: none after stop().
        private var failure: USBError? { state.withLock { $0.stopped ? nil : $0.end } }

        /// A released chunk's buffer goes back to the queue (and out again).
        func giveBack(_ box: TransferBox) {
            queue.recycle(box)
            refill()
        }

        /// Parks a reader that found nothing in flight until a refill
        /// submits, the stream ends, or (`unlessCancelled`) its task is
        /// cancelled; nil if there is something to take already.
        private func parkStarved(_ waiter: StreamWaiter, id: UInt64, unlessCancelled: Bool = false) -> Bool {
            state.withLock { s -> Bool in
                // Under the stream's lock: a refill submits before it takes
                // this lock to wake the starved, so one of the two sees the other.
                guard s.end == nil, !s.stopped, queue.pending == 0 else { return false }
                if unlessCancelled, Task.isCancelled { return false }
                s.starved[id] = waiter
                return true
            }
        }

        private func starvedID() -> UInt64 {
            state.withLock { s in
                s.nextWaiter += 1
                return s.nextWaiter
            }
        }

        func nextChunk(timeout: Duration?) throws(USBError) -> USBInChunk? {
            let deadline = timeout.map { ContinuousClock.now + $0 }
            while true {
                if stoppedFlag.load(ordering: .acquiring) { return nil }
                let left = deadline.map { $0 - .now }
                if let done = try queue.nextComplete(timeout: left.map { max($0, .zero) }) { return try chunk(done) }
                // Nothing pending: the stream is over, or readers hold every buffer.
                if let failure { throw failure }
                let id = starvedID()
                let until: DispatchTime = left.map { .now() + .nanoseconds(Int(clamping: max($0, .zero).nanoseconds)) } ?? .distantFuture
                let timedOut = StreamWaiter.block(on: DispatchSemaphore(value: 0), until: until) { parkStarved($0, id: id) } unpark: {
                    state.withLock { $0.starved.removeValue(forKey: id) } != nil
                }
                if timedOut { throw USBError.timeoutError(queue.operation) }
            }
        }

        func nextChunk() async throws(USBError) -> USBInChunk? {
            while true {
                if stoppedFlag.load(ordering: .acquiring) { return nil }
                if let done = try await queue.nextComplete(onTaskCancel: .stopWaiting) { return try chunk(done) }
                if let failure { throw failure }
                if Task.isCancelled { throw USBError.cancelled("waiting for the " + queue.operation) }
                let id = starvedID()
                await withTaskCancellationHandler {
                    await StreamWaiter.suspend { parkStarved($0, id: id, unlessCancelled: true) }
                } onCancel: {
                    state.withLock { $0.starved.removeValue(forKey: id) }?.wake()
                }
            }
        }
    }
}

/// A chunk of an IN stream that lends the transfer's buffer: no copy. The
/// buffer is the stream's again when the last reference goes.
package final class USBInChunk: @unchecked Sendable {  // the bytes are read only; the box is not reused until deinit
    private let engine: USBInStream.Engine
    private let box: TransferBox
    /// Bytes in the chunk.
    package let count: Int

    init(engine: USBInStream.Engine, box: TransferBox, count: Int) {
        self.engine = engine
        self.box = box
        self.count = count
    }

    deinit { engine.giveBack(box) }

    /// The bytes, valid while this chunk is alive.
    package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: box.buffer[0..<count]) }

    /// The bytes copied into an array.
    package var array: [UInt8] { Array(bytes) }
}

extension USBError {
    static func timeoutError(_ operation: String) -> USBError {
        USBError(refusing: LIBUSB_ERROR_TIMEOUT.rawValue, operation: operation)
    }
}

/// A reader parked until a stream or reader has something for it: a thread
/// (``USBInStream/next(timeout:)``, ``USBReader/wait()``) or a task.
enum StreamWaiter {
    case blocking(DispatchSemaphore)
    case async(UnsafeContinuation<Void, Never>)
    func wake() {
        switch self {
        case .blocking(let s): s.signal()
        case .async(let c): c.resume()
        }
    }

    /// Blocks the calling thread until woken, unless `park` (which registers
    /// the waiter under its owner's lock) returns false: nothing to wait for.
    static func block(_ park: (StreamWaiter) -> Bool) {
        _ = block(on: DispatchSemaphore(value: 0), until: .distantFuture, park) { false }
    }

    /// ``block(_:)`` until `deadline`: true when it passed with the waiter
    /// still parked (`unpark` took it back under the owner's lock). A wake-up
    /// that raced the deadline is waited for, so `semaphore` (at zero on
    /// entry) is at zero again on return and may be reused.
    static func block(on semaphore: DispatchSemaphore, until deadline: DispatchTime,
                      _ park: (StreamWaiter) -> Bool, unpark: () -> Bool) -> Bool {
        guard park(.blocking(semaphore)) else { return false }
        guard semaphore.wait(timeout: deadline) == .timedOut else { return false }
        if unpark() { return true }
        semaphore.wait()
        return false
    }

    /// The async form of ``block(_:)``.
    static func suspend(_ park: (StreamWaiter) -> Bool) async {
        // Unsafe: resumed exactly once by construction (a parked waiter is
        // removed under its owner's lock before it is woken).
        await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
            if !park(.async(c)) { c.resume() }
        }
    }
}

extension TransferBox {
    /// The shape every stream and reader accepts: 1...256 transfers
    /// of 1 byte...16 MiB each.
    static func checkStreamShape(transfers: Int, size: Int, operation: String) throws(USBError) {
        guard size > 0, size <= 1 << 24, (1...256).contains(transfers) else {
            throw USBError.invalid("\(operation): \(transfers) x \(size) bytes (1...256 transfers of 1 byte...16 MiB)")
        }
    }
}

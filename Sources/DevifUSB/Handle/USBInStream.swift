import CLibUSB
import DevifCore
import Dispatch
import Synchronization

/// Continuous reading of one IN endpoint with several transfers in flight,
/// so the device is never left without a buffer to fill (the way to reach
/// full bulk speed).
///
/// Chunks are taken in the order the device sent them, with ``next(timeout:)``
/// (blocking) or ``next()`` (async). The stream owns twice as many buffers
/// as it keeps in flight: a completed transfer is replaced at once, on the
/// event thread, by a spare one (a reader's wake-up latency does not leave
/// the device idle); once the reader holds every spare, the stream stops
/// refilling, so a slow reader slows the device down (it NAKs) instead of
/// losing data. ``stop()`` cancels what is in flight; so do
/// removal and closing the device, which end the stream with
/// ``USBError/deviceRemoved`` or ``USBError/closed``. ``finished()`` waits
/// until every transfer is back, after which the endpoint is free for
/// another stream or read.
///
/// Dropping the last reference stops the stream, as ``stop()`` does: its
/// transfers are cancelled and come back on their own, so a forgotten
/// stream does not keep the endpoint's data. (To reuse the endpoint at once,
/// `stop()` and `finished()` first: they wait until the transfers are back.)
package final class USBInStream: Sendable {
    /// The endpoint read.
    package var endpoint: UInt8 { engine.endpoint }
    /// Bytes of every chunk taken so far.
    package var bytesReceived: UInt64 { engine.bytesReceived }

    // The transfers' completions hold the engine, never this owner, so the
    // owner's deinit runs when its holders let go, however many are in flight.
    private let engine: Engine

    #if DEBUG
    /// Lab tests only (debug builds): called when a refill has taken a spare
    /// buffer, just before submitting it: a stop() arriving there must still
    /// leave nothing in flight.
    package var beforeSubmit: CallbackSlot<Void> { engine.beforeSubmit }
    #endif

    init(core: USBDeviceCore, endpoint: USBDevice.Endpoint, transferSize: Int, transfers: Int,
         timeout: Duration?) throws(USBError) {
        engine = try Engine(core: core, endpoint: endpoint, transferSize: transferSize, transfers: transfers,
                            timeout: timeout)
    }

    deinit { engine.stop() }

    /// Stops reading: transfers in flight are cancelled, waiting readers get
    /// nil. Idempotent.
    package func stop() { engine.stop() }

    /// Blocks until the stream has ended (``stop()``, removal, closing, an
    /// error) and every transfer is back from libusb; returns what ended it
    /// (nil: ``stop()``). Not from the event thread.
    @discardableResult
    package func wait() -> USBError? { engine.wait() }

    /// The async form of ``wait()``.
    @discardableResult
    package func finished() async -> USBError? { await engine.finished() }

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
    /// The running stream: its buffers, transfers and readers. See ``USBInStream``.
    final class Engine: Sendable {
        let endpoint: UInt8
        var bytesReceived: UInt64 { state.withLock { $0.bytes } }

        private struct State {
            var ready: [(box: TransferBox, count: Int)] = []
            var readyHead = 0
            /// Idle buffers, submitted when fewer than `transfers` are in flight.
            var spares: [TransferBox] = []
            var inFlight = 0
            var end: USBError?
            var stopped = false
            var waiters: [UInt64: StreamWaiter] = [:]
            var nextWaiter: UInt64 = 0
            var bytes: UInt64 = 0
            /// Waiting in ``finished()`` / ``wait()``.
            var drainWaiters: [StreamWaiter] = []

            var isOver: Bool { (stopped || end != nil) && inFlight == 0 }
            /// The drain waiters to wake, once the stream is over.
            mutating func takeDrainWaiters() -> [StreamWaiter] {
                guard isOver else { return [] }
                defer { drainWaiters = [] }
                return drainWaiters
            }
        }


        private let core: USBDeviceCore
        private let ep: USBDevice.Endpoint
        private let transferSize: Int
        private let timeout: Duration?
        private let state = Mutex(State())
        private let boxes: [TransferBox]
        private let transfers: Int
        #if DEBUG
        let beforeSubmit = CallbackSlot<Void>()
        #endif

        init(core: USBDeviceCore, endpoint: USBDevice.Endpoint, transferSize: Int, transfers: Int,
             timeout: Duration?) throws(USBError) {
            self.core = core
            self.ep = endpoint
            self.endpoint = endpoint.address
            self.transferSize = transferSize
            self.timeout = timeout
            self.transfers = transfers
            boxes = try TransferBox.streamSet(transfers: transfers, keeping: 2 * transfers, of: transferSize,
                                              transport: core.transport, operation: "stream from " + core.describe(endpoint))
            state.withLock { $0.spares = boxes }
            refill()
            if let error = state.withLock({ $0.end }) {
                stop()
                throw error
            }
        }

        /// Submits spare buffers until `transfers` are in flight (or the stream
        /// ended). Called at start, by completions and by readers.
        private func refill() {
            while true {
                let box = state.withLock { s -> TransferBox? in
                    guard s.end == nil, !s.stopped, s.inFlight < transfers, let box = s.spares.popLast() else { return nil }
                    s.inFlight += 1
                    return box
                }
                guard let box else { return }
                #if DEBUG
                beforeSubmit.call(())
                #endif
                do throws(USBError) { try submit(box) } catch {
                    let woken = state.withLock { s -> [StreamWaiter] in
                        s.inFlight -= 1
                        s.spares.append(box)
                        if s.end == nil { s.end = error }
                        defer { s.waiters = [:] }
                        return Array(s.waiters.values) + s.takeDrainWaiters()
                    }
                    for b in boxes { b.cancel() }
                    for w in woken { w.wake() }
                    return
                }
                // stop() may have come between taking the box and submitting it,
                // and found it idle: cancel it here, or it would stay in flight
                // for a stream nobody reads and take the endpoint's next data.
                if state.withLock({ $0.stopped || $0.end != nil }) { box.cancel() }
            }
        }

        private func submit(_ box: TransferBox) throws(USBError) {
            let type = core.transferType(ep)
            try core.submit(box, type: type, endpoint: ep.address, length: transferSize, timeout: timeout, zlp: false) {
                [self] box, result in completed(box, result)
            }
        }

        private func completed(_ box: TransferBox, _ result: Result<Int, USBError>) {
            var ending = false
            let woken = state.withLock { s -> [StreamWaiter] in
                s.inFlight -= 1
                switch result {
                case .success(let n): s.ready.append((box, n))
                case .failure(let error):
                    s.spares.append(box)
                    // The first error ends the stream (a cancel after stop is not an error).
                    if s.end == nil, !s.stopped {
                        s.end = error
                        ending = true
                    }
                }
                if s.end != nil || s.stopped {
                    defer { s.waiters = [:] }
                    return Array(s.waiters.values) + s.takeDrainWaiters()
                }
                guard let first = s.waiters.keys.min() else { return [] }
                return [s.waiters.removeValue(forKey: first)!]
            }
            // The rest would wait for data (or forever, without a timeout).
            if ending { for b in boxes { b.cancel() } }
            // The device first: a spare goes out before the reader is woken
            // (a wake-up is a system call on this, the event thread).
            refill()
            for w in woken { w.wake() }
        }

        func stop() {
            let woken = state.withLock { s -> [StreamWaiter] in
                s.stopped = true
                defer { s.waiters = [:] }
                return Array(s.waiters.values) + s.takeDrainWaiters()
            }
            for box in boxes { box.cancel() }
            for w in woken { w.wake() }
        }

        func wait() -> USBError? {
            StreamWaiter.block(parkUntilOver)
            return state.withLock { $0.end }
        }

        func finished() async -> USBError? {
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

        private enum Take { case chunk(TransferBox, Int), ended(USBError?), wait }

        private func take() -> Take {
            state.withLock { s -> Take in
                if s.stopped { return .ended(nil) }
                if s.readyHead < s.ready.count {
                    let item = s.ready[s.readyHead]
                    s.readyHead += 1
                    if s.readyHead > 64, s.readyHead * 2 > s.ready.count {
                        s.ready.removeFirst(s.readyHead)
                        s.readyHead = 0
                    }
                    s.bytes += UInt64(item.count)
                    return .chunk(item.box, item.count)
                }
                if let end = s.end { return .ended(end) }
                return .wait
            }
        }

        private enum Poll { case value(USBInChunk?), wait }

        /// A chunk (lending its buffer until released), nil at the end of a
        /// stopped stream, the error that ended it, or `.wait`.
        private func poll() throws(USBError) -> Poll {
            switch take() {
            case .chunk(let box, let n): return .value(USBInChunk(engine: self, box: box, count: n))
            case .ended(let error):
                if let error { throw error }
                return .value(nil)
            case .wait: return .wait
            }
        }

        /// A released chunk's buffer goes back to the spares (and out again).
        func giveBack(_ box: TransferBox) {
            state.withLock { $0.spares.append(box) }
            refill()
        }

        func nextChunk(timeout: Duration?) throws(USBError) -> USBInChunk? {
            let deadline = timeout.map { DispatchTime.now() + .nanoseconds(Int(clamping: $0.nanoseconds)) }
            while true {
                if case .value(let chunk) = try poll() { return chunk }
                let semaphore = DispatchSemaphore(value: 0)
                let id = state.withLock { s -> UInt64? in
                    // Re-check under the lock: a completion may have come meanwhile.
                    if s.readyHead < s.ready.count || s.end != nil || s.stopped { return nil }
                    s.nextWaiter += 1
                    s.waiters[s.nextWaiter] = .blocking(semaphore)
                    return s.nextWaiter
                }
                guard let id else { continue }
                if semaphore.wait(timeout: deadline ?? .distantFuture) == .timedOut {
                    let removed = state.withLock { $0.waiters.removeValue(forKey: id) != nil }
                    if removed { throw USBError.timeoutError("stream from " + core.describe(ep)) }
                    // Woken while timing out: take what came.
                }
            }
        }

        func nextChunk() async throws(USBError) -> USBInChunk? {
            while true {
                if case .value(let chunk) = try poll() { return chunk }
                let id = state.withLock { s -> UInt64 in s.nextWaiter += 1; return s.nextWaiter }
                await withTaskCancellationHandler {
                    await StreamWaiter.suspend { waiter in
                        state.withLock { s -> Bool in
                            if s.readyHead < s.ready.count || s.end != nil || s.stopped || Task.isCancelled { return false }
                            s.waiters[id] = waiter
                            return true
                        }
                    }
                } onCancel: {
                    state.withLock { $0.waiters.removeValue(forKey: id) }?.wake()
                }
                if Task.isCancelled { throw USBError.cancelled("waiting for the stream from " + core.describe(ep)) }
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
        let semaphore = DispatchSemaphore(value: 0)
        if park(.blocking(semaphore)) { semaphore.wait() }
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
    /// The buffers of a stream or reader of `transfers` x `size` bytes
    /// (`count` of them), after checking that shape.
    static func streamSet(transfers: Int, keeping count: Int, of size: Int, transport: any USBTransport,
                          operation: String) throws(USBError) -> [TransferBox] {
        try checkStreamShape(transfers: transfers, size: size, operation: operation)
        var boxes: [TransferBox] = []
        for _ in 0..<count {
            let box = try TransferBox(capacity: size, transport: transport)
            box.operation = operation
            boxes.append(box)
        }
        return boxes
    }

    /// The shape every stream, reader and queue accepts: 1...256 transfers
    /// of 1 byte...16 MiB each.
    static func checkStreamShape(transfers: Int, size: Int, operation: String) throws(USBError) {
        guard size > 0, size <= 1 << 24, (1...256).contains(transfers) else {
            throw USBError.invalid("\(operation): \(transfers) x \(size) bytes (1...256 transfers of 1 byte...16 MiB)")
        }
    }
}

import DevifCore
import Synchronization

/// Continuous writing to one OUT endpoint with several transfers queued, so
/// the device always has the next buffer waiting (the way to reach full
/// bulk speed on OUT). An adapter on a ``TransferQueue``.
///
/// Bytes written are gathered into buffers of the transfer size; a full
/// buffer is submitted at once. When every buffer is in flight, a write
/// waits for the oldest to complete: a slow device slows the writer down
/// (backpressure), and nothing is dropped. The first failed transfer ends
/// the stream: the write or ``finish(timeout:)`` that sees it throws it
/// (``USBError/deviceRemoved``, ``USBError/closed``, a stall, ...).
///
/// The end of the data: ``finish(timeout:)`` submits what is gathered and
/// waits for every transfer. With `zeroLengthPacket` (the default), a
/// stream whose length is a multiple of the endpoint's packet size ends
/// with a zero-length packet, so the device sees where the data ends (the
/// USB rule for bulk transfers of unknown length); the transfers before the
/// last never carry one, so the device sees one continuous transfer.
///
/// One writer at a time: writes and ``finish(timeout:)`` from several
/// threads at once are serialized but interleave their bytes.
package final class USBOutStream: Sendable {
    private struct State {
        var current: TransferBox?
        var filled = 0
        var end: USBError?
        var finished = false
        var bytesSent: UInt64 = 0
    }

    private let queue: TransferQueue
    private let zeroLengthPacket: Bool
    /// A writer held back waits for this many transfers to come back.
    private var refillBatch: Int { max(1, queue.depth / 2) }
    private let state = Mutex(State())

    /// The endpoint written.
    package var endpoint: UInt8 { queue.endpoint.address }
    /// Writers parked for buffers to come back (tests see a writer held back).
    package var waitingWriters: Int { queue.waiting }
    /// Bytes the device has taken so far (completed transfers).
    package var bytesSent: UInt64 { state.withLock { $0.bytesSent } }

    init(core: USBDeviceCore, endpoint: USBDevice.Endpoint, transferSize: Int, transfers: Int, timeout: Duration?,
         zeroLengthPacket: Bool) throws(USBError) {
        let operation = "stream to " + core.describe(endpoint)
        guard endpoint.maxPacketSize <= 0 || transferSize % endpoint.maxPacketSize == 0 else {
            // A transfer ending in a short packet would end the device's transfer there.
            throw USBError.invalid("\(operation): transfer size \(transferSize) is not a multiple of the packet size \(endpoint.maxPacketSize)")
        }
        try TransferBox.checkStreamShape(transfers: transfers, size: transferSize, operation: operation)
        queue = try TransferQueue(core: core, endpoint: endpoint, depth: transfers, transferSize: transferSize,
                                  timeout: timeout, operation: operation)
        self.zeroLengthPacket = zeroLengthPacket
    }

    deinit { queue.cancelAll() }

    // MARK: Writing

    /// Queues the bytes of `buffer` (copied); blocks only while every
    /// transfer is in flight. Not from a completion handler.
    package func write(from buffer: UnsafeRawBufferPointer) throws(USBError) {
        try write(count: buffer.count) { region, offset in
            region.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + region.count)]))
        }
    }

    /// Queues `count` bytes that `fill` writes straight into the transfers'
    /// buffers (no copy in between): it is called with consecutive regions
    /// and each region's offset in the `count` bytes, and must fill the
    /// region whole. Blocks only while every transfer is in flight.
    package func write(count: Int, filling fill: (UnsafeMutableRawBufferPointer, Int) -> Void) throws(USBError) {
        var offset = 0
        while true {
            switch try place(count, from: &offset, fill) {
            case .done: return
            case .needBuffer:
                // Half the queue back at once: one wake-up per half, not per transfer.
                try reap(try queue.nextComplete(timeout: nil, batch: refillBatch))
                try reapCompleted()
            }
        }
    }

    /// The async form of ``write(count:filling:)``: suspends while every
    /// transfer is in flight.
    package func write(count: Int, filling fill: (UnsafeMutableRawBufferPointer, Int) -> Void) async throws(USBError) {
        var offset = 0
        while true {
            switch try place(count, from: &offset, fill) {
            case .done: return
            case .needBuffer:
                try reap(await queue.nextComplete(batch: refillBatch))
                try reapCompleted()
            }
        }
    }

    /// The async form of ``write(from:)``, for an array.
    package func write(_ bytes: [UInt8]) async throws(USBError) {
        try await write(count: bytes.count) { region, offset in
            bytes.withUnsafeBytes { b in
                region.copyMemory(from: UnsafeRawBufferPointer(rebasing: b[offset..<(offset + region.count)]))
            }
        }
    }

    /// Submits what is gathered, the zero-length packet if the rule asks for
    /// one, and waits (at most `timeout` for each transfer) until every
    /// transfer is done. Returns the bytes the device took. Later writes fail
    /// with ``USBError/closed``.
    @discardableResult
    package func finish(timeout: Duration? = .seconds(5)) throws(USBError) -> UInt64 {
        if try submitLast() {
            var box = try queue.idleBuffer()
            while box == nil {
                try reap(try queue.nextComplete(timeout: timeout))
                box = try queue.idleBuffer()
            }
            try submit(box!, length: 0, zlp: false)
        }
        while let done = try queue.nextComplete(timeout: timeout) { try reap(done) }
        return try ended()
    }

    /// The async form of ``finish(timeout:)`` (no timeout; cancel the task instead).
    @discardableResult
    package func finish() async throws(USBError) -> UInt64 {
        if try submitLast() {
            var box = try queue.idleBuffer()
            while box == nil {
                try reap(await queue.nextComplete())
                box = try queue.idleBuffer()
            }
            try submit(box!, length: 0, zlp: false)
        }
        while let done = try await queue.nextComplete() { try reap(done) }
        return try ended()
    }

    /// Stops the stream: transfers in flight are cancelled (what they held
    /// may or may not have reached the device), later writes fail.
    package func cancel() {
        state.withLock { s in
            if s.end == nil { s.end = .cancelled(queue.operation) }
        }
        queue.cancelAll()
    }

    // MARK: Steps

    private enum Placed { case done, needBuffer }
    /// One step of `place`: a buffer filled whole (submit it), every byte
    /// placed, or no buffer in hand.
    private enum Step { case full(TransferBox), placedAll, noBuffer }

    /// Fills as much of `count` bytes as fits into buffers (`fill` writes
    /// each region), submitting each full one; `.needBuffer` when every
    /// buffer is taken.
    private func place(_ count: Int, from offset: inout Int,
                       _ fill: (UnsafeMutableRawBufferPointer, Int) -> Void) throws(USBError) -> Placed {
        while true {
            let step = try state.withLock { s throws(USBError) -> Step in
                if let end = s.end { throw end }
                if s.finished { throw .closed(queue.operation) }
                guard offset < count else { return .placedAll }
                guard let box = s.current else { return .noBuffer }
                let n = min(count - offset, queue.transferSize - s.filled)
                fill(UnsafeMutableRawBufferPointer(rebasing: box.buffer[s.filled..<(s.filled + n)]), offset)
                s.filled += n
                offset += n
                guard s.filled == queue.transferSize else { return .placedAll }
                s.current = nil
                s.filled = 0
                return .full(box)
            }
            switch step {
            case .full(let box): try submit(box, length: queue.transferSize, zlp: false)
            case .placedAll: return .done
            case .noBuffer:
                // No buffer in hand: take an idle one, or wait for one.
                guard let box = try queue.idleBuffer() else { return .needBuffer }
                state.withLock { s in
                    if s.current == nil { s.current = box; s.filled = 0 } else { queue.recycle(box) }
                }
            }
        }
    }

    private func submit(_ box: TransferBox, length: Int, zlp: Bool) throws(USBError) {
        do throws(USBError) {
            try queue.submit(box, length: length, zeroLengthPacket: zlp)
        } catch {
            fail(error)
            throw error
        }
    }

    /// Takes one completed transfer back: counts its bytes or ends the stream.
    private func reap(_ done: TransferQueue.Completion?) throws(USBError) {
        guard let done else { return }
        queue.recycle(done.box)
        switch done.result {
        case .success(let n): state.withLock { $0.bytesSent += UInt64(n) }
        case .failure(let error):
            fail(error)
            throw state.withLock { $0.end } ?? error
        }
    }

    /// Takes back every transfer that is done without waiting.
    private func reapCompleted() throws(USBError) {
        while let done = queue.takeCompleted() { try reap(done) }
    }

    private func fail(_ error: USBError) {
        let first = state.withLock { s -> Bool in
            guard s.end == nil else { return false }
            s.end = error
            return true
        }
        if first { queue.cancelAll() }
    }

    /// Submits the last, partial buffer (with the zero-length-packet rule);
    /// true when the data ended with a full transfer and a zero-length one
    /// must follow as the end marker.
    private func submitLast() throws(USBError) -> Bool {
        let (box, filled, first) = try state.withLock { s throws(USBError) -> (TransferBox?, Int, Bool) in
            if let end = s.end { throw end }
            guard !s.finished else { return (nil, 0, false) }
            s.finished = true
            defer { s.current = nil; s.filled = 0 }
            return (s.current, s.filled, true)
        }
        guard first else { return false }
        if let box, filled > 0 {
            // The flag makes the transport add a ZLP only if `filled` ends on a packet boundary.
            try submit(box, length: filled, zlp: zeroLengthPacket)
            return false
        }
        if let box { queue.recycle(box) }
        // Everything went out in full transfers, whose size is a multiple of
        // the packet size: a zero-length transfer marks the end.
        return zeroLengthPacket && (queue.pending > 0 || state.withLock { $0.bytesSent } > 0)
    }

    private func ended() throws(USBError) -> UInt64 {
        try state.withLock { s throws(USBError) -> UInt64 in
            if let end = s.end { throw end }
            return s.bytesSent
        }
    }
}

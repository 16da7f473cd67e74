import Synchronization

/// The consumer half of one subscription: turns ring entries into deliveries,
/// ends the stream, and leaves the fan-out (frees the slot) exactly once.
/// Inlinable for the same reason as `SubscriberRing.push`: specialised in the
/// consuming module, it avoids type-metadata look-ups on every delivery.
@usableFromInline
final class FanOutConsumer<Event: Sendable>: @unchecked Sendable {
    @usableFromInline
    enum Poll {
        case delivery(FanOut<Event>.Delivery)
        case empty
        case end
    }

    @usableFromInline let ring: SubscriberRing<Event>
    private let slot: FanOutSlot<Event>
    private let left = Atomic<Bool>(false)
    /// Guards against two consumers at once (the ring is single-consumer).
    @usableFromInline let consuming = Atomic<Bool>(false)

    // Consumer-private state (one consumer at a time, enforced by `consuming`,
    // so the runtime's exclusivity check would only cost a call per delivery).
    @exclusivity(unchecked) @usableFromInline var pending: Event?
    @exclusivity(unchecked) @usableFromInline var ended = false

    init(ring: SubscriberRing<Event>, slot: FanOutSlot<Event>) {
        self.ring = ring
        self.slot = slot
    }

    /// Stops deliveries and frees the slot. Any thread, any number of times.
    func cancel() {
        ring.cancel()
        leave()
    }

    @usableFromInline
    func leave() {
        if !left.exchange(true, ordering: .relaxed) { slot.retire() }
    }

    @inlinable
    func beginConsuming() {
        // Acquire/release: successive consumers (e.g. an iterator resumed on another
        // thread) see each other's consumer-private state.
        let busy = consuming.exchange(true, ordering: .acquiring)
        precondition(!busy, "A fan-out subscription was iterated from two tasks or threads at once; it has a single consumer.")
    }

    @inlinable
    func endConsuming() {
        consuming.store(false, ordering: .releasing)
    }

    /// The next delivery without waiting.
    @inlinable
    func poll() -> Poll {
        if let event = pending {
            pending = nil
            return .delivery(.event(event))
        }
        if ended { return .end }
        if ring.cancelled.load(ordering: .acquiring) {
            return finishStream(missed: 0)
        }
        if let entry = ring.pop() { return deliver(entry) }
        // Acquire: pairs with `close`'s release, so every push before it is visible.
        if ring.closed.load(ordering: .acquiring) {
            if let entry = ring.pop() { return deliver(entry) }
            // Drops after the last queued event are still a gap: report them.
            return finishStream(missed: ring.missed.load(ordering: .relaxed))
        }
        return .empty
    }

    @inlinable
    func deliver(_ entry: SubscriberRing<Event>.Entry) -> Poll {
        if entry.missedBefore == 0 { return .delivery(.event(entry.event)) }
        pending = entry.event
        return .delivery(.overflow(missed: entry.missedBefore))
    }

    @inlinable
    func finishStream(missed: UInt64) -> Poll {
        ended = true
        leave()
        return missed == 0 ? .end : .delivery(.overflow(missed: missed))
    }

    /// The next delivery, suspending while the queue is empty; nil at the end of
    /// the stream (finished, cancelled, or the task was cancelled).
    @inlinable
    func next(isolation actor: isolated (any Actor)? = #isolation) async -> FanOut<Event>.Delivery? {
        beginConsuming()
        defer { endConsuming() }
        while true {
            switch poll() {
            case .delivery(let d): return d
            case .end: return nil
            case .empty: await ring.parkTask()
            }
        }
    }

    /// The next delivery, blocking the calling thread while the queue is empty.
    @inlinable
    func nextBlocking() -> FanOut<Event>.Delivery? {
        beginConsuming()
        defer { endConsuming() }
        while true {
            switch poll() {
            case .delivery(let d): return d
            case .end: return nil
            case .empty: ring.parkThread()
            }
        }
    }
}

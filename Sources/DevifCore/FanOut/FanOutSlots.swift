import Synchronization

/// One place in the fan-out's subscriber list. Slots are never freed while the
/// fan-out lives, so the publisher can walk them without reclamation races; a
/// slot's `ring` reference is guarded by `state`.
///
/// States and who moves them:
///
///     free --subscriber claims--> claimed --subscriber installs ring--> active
///     active --publisher enters--> busy --publisher leaves--> active
///     active --subscriber leaves--> reclaiming --subscriber clears ring--> free
///     busy --subscriber leaves--> retiring --publisher leaves, clears ring--> free
///
/// While `busy`, only the publisher touches `ring`; an unsubscribe that arrives
/// then hands the clean-up to the publisher instead of waiting for it, so
/// neither side ever waits for the other.
final class FanOutSlot<Event: Sendable>: @unchecked Sendable {
    static var free: Int { 0 }
    static var claimed: Int { 1 }
    static var active: Int { 2 }
    static var busy: Int { 3 }
    static var retiring: Int { 4 }
    static var reclaiming: Int { 5 }

    let state = Atomic<Int>(0)
    /// Guarded by `state`: written only by whoever holds `claimed`, `reclaiming`
    /// or `retiring`-then-leaving; read by the publisher only while `busy`.
    var ring: SubscriberRing<Event>?

    // MARK: Subscriber side (cold path; may retry, never waits for the publisher)

    func tryClaim() -> Bool {
        // Sequentially consistent (cold path): keeps this slot's state changes in
        // the single total order that `FanOut.finish` relies on. It also acquires
        // the `free` store, so the previous owner's `ring = nil` happens-before our write.
        state.load(ordering: .relaxed) == Self.free
            && state.compareExchange(expected: Self.free, desired: Self.claimed,
                                     ordering: .sequentiallyConsistent).exchanged
    }

    func install(_ ring: SubscriberRing<Event>) {
        self.ring = ring
        // Release publishes `ring` to the publisher's acquiring exchange;
        // sequentially consistent for the finish/subscribe race (see `FanOut.subscribe`).
        state.store(Self.active, ordering: .sequentiallyConsistent)
    }

    /// Removes the ring from the slot. Called once by the subscription that owns it.
    func retire() {
        while true {
            switch state.load(ordering: .acquiring) {
            case Self.active:
                // Acquire: the publisher's last use of `ring` (its release on leaving
                // `busy`) happens-before we clear it.
                if state.compareExchange(expected: Self.active, desired: Self.reclaiming,
                                         ordering: .acquiring).exchanged {
                    ring = nil
                    // Release: `ring = nil` happens-before the next claimer's write.
                    state.store(Self.free, ordering: .releasing)
                    return
                }
            case Self.busy:
                // The publisher is inside; it will clear the slot when it leaves.
                if state.compareExchange(expected: Self.busy, desired: Self.retiring,
                                         ordering: .relaxed).exchanged {
                    return
                }
            default:
                // Not ours any more (cannot happen for a single retire); nothing to do.
                return
            }
        }
    }

    // MARK: Publisher side (hot path; one attempt, never waits)

    /// Enters the slot if it is active and returns its ring; call `leave()` after
    /// using it. Lock-free: one compare-exchange, no retries. (Not a closure-taking
    /// API: a closure capturing a generic event can be heap-allocated in debug builds.)
    @inline(__always)
    func enter() -> SubscriberRing<Event>? {
        // Sequentially consistent load (a plain load on x86): `finish` needs it in
        // the total order with `install`; for `publish` it is just a cheap filter.
        guard state.load(ordering: .sequentiallyConsistent) == Self.active else { return nil }
        // Acquire: pairs with `install`'s release, so `ring` is visible.
        guard state.compareExchange(expected: Self.active, desired: Self.busy,
                                    ordering: .acquiring).exchanged else { return nil }
        return ring.unsafelyUnwrapped
    }

    /// Leaves a slot entered with `enter()`.
    @inline(__always)
    func leave() {
        // Release: our use of `ring` happens-before a later `retire` clears it.
        if !state.compareExchange(expected: Self.busy, desired: Self.active,
                                  ordering: .releasing).exchanged {
            // `retiring`: the subscriber left while we were inside; finish its job.
            ring = nil
            state.store(Self.free, ordering: .releasing)
        }
    }

    var isSubscribed: Bool {
        let s = state.load(ordering: .relaxed)
        return s == Self.active || s == Self.busy
    }
}

/// A fixed group of slots; chunks form an append-only list so the subscriber
/// list can grow without ever moving or freeing a slot the publisher may be reading.
final class FanOutSlotChunk<Event: Sendable>: Sendable {
    static var size: Int { 16 }
    let slots: [FanOutSlot<Event>]
    /// Set once (lock-free) when every slot before it is in use.
    let next = AtomicLazyReference<FanOutSlotChunk<Event>>()

    init() {
        slots = (0..<Self.size).map { _ in FanOutSlot() }
    }
}

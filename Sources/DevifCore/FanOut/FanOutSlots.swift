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
@usableFromInline
final class FanOutSlot<Event: Sendable>: @unchecked Sendable {

    @usableFromInline let state = Atomic<Int>(0)
    /// Guarded by `state`: written only by whoever holds `claimed`, `reclaiming`
    /// or `retiring`-then-leaving; read by the publisher only while `busy`.
    /// No dynamic exclusivity check: `state` already makes every access exclusive,
    /// and the check (a thread-local access set) was two calls per push.
    @exclusivity(unchecked) @usableFromInline var ring: SubscriberRing<Event>?

    // MARK: Subscriber side (cold path; may retry, never waits for the publisher)

    func tryClaim() -> Bool {
        // Sequentially consistent (cold path): keeps this slot's state changes in
        // the single total order that `FanOut.finish` relies on. It also acquires
        // the `free` store, so the previous owner's `ring = nil` happens-before our write.
        state.load(ordering: .relaxed) == SlotState.free
            && state.compareExchange(expected: SlotState.free, desired: SlotState.claimed,
                                     ordering: .sequentiallyConsistent).exchanged
    }

    func install(_ ring: SubscriberRing<Event>) {
        self.ring = ring
        // Release publishes `ring` to the publisher's acquiring exchange;
        // sequentially consistent for the finish/subscribe race (see `FanOut.subscribe`).
        state.store(SlotState.active, ordering: .sequentiallyConsistent)
    }

    /// Removes the ring from the slot. Called once by the subscription that owns it.
    func retire() {
        while true {
            switch state.load(ordering: .acquiring) {
            case SlotState.active:
                // Acquire: the publisher's last use of `ring` (its release on leaving
                // `busy`) happens-before we clear it.
                if state.compareExchange(expected: SlotState.active, desired: SlotState.reclaiming,
                                         ordering: .acquiring).exchanged {
                    ring = nil
                    // Release: `ring = nil` happens-before the next claimer's write.
                    state.store(SlotState.free, ordering: .releasing)
                    return
                }
            case SlotState.busy:
                // The publisher is inside; it will clear the slot when it leaves.
                if state.compareExchange(expected: SlotState.busy, desired: SlotState.retiring,
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

    /// Enters the slot if it is active (then `ring` and `unretainedRing` may be
    /// used until `leave()`). Lock-free: one compare-exchange, no retries. (Not a closure-taking
    /// API: a closure capturing a generic event can be heap-allocated in debug builds.)
    @inlinable
    func enter() -> Bool {
        // Sequentially consistent load (a plain load on x86): `finish` needs it in
        // the total order with `install`; for `publish` it is just a cheap filter.
        guard state.load(ordering: .sequentiallyConsistent) == SlotState.active else { return false }
        // Acquire: pairs with `install`'s release, so `ring` is visible.
        return state.compareExchange(expected: SlotState.active, desired: SlotState.busy,
                                     ordering: .acquiring).exchanged
    }

    /// The ring without retaining it; only between `enter()` and `leave()`, while
    /// `ring` (which owns it) cannot change.
    @inlinable
    var unretainedRing: Unmanaged<SubscriberRing<Event>> {
        Unmanaged.passUnretained(ring.unsafelyUnwrapped)
    }

    /// Leaves a slot entered with `enter()`.
    @inlinable
    func leave() {
        // Release: our use of `ring` happens-before a later `retire` clears it.
        if !state.compareExchange(expected: SlotState.busy, desired: SlotState.active,
                                  ordering: .releasing).exchanged {
            // `retiring`: the subscriber left while we were inside; finish its job.
            ring = nil
            state.store(SlotState.free, ordering: .releasing)
        }
    }

    var isSubscribed: Bool {
        let s = state.load(ordering: .relaxed)
        return s == SlotState.active || s == SlotState.busy
    }
}

/// Slot states. Not nested in the generic class: unspecialised generic code
/// would look up the class's metadata on every use of a nested constant.
@usableFromInline
enum SlotState {
    @inlinable static var free: Int { 0 }
    @inlinable static var claimed: Int { 1 }
    @inlinable static var active: Int { 2 }
    @inlinable static var busy: Int { 3 }
    @inlinable static var retiring: Int { 4 }
    @inlinable static var reclaiming: Int { 5 }
}

/// A fixed group of slots; chunks form an append-only list so the subscriber
/// list can grow without ever moving or freeing a slot the publisher may be reading.
@usableFromInline
final class FanOutSlotChunk<Event: Sendable>: Sendable {
    @usableFromInline let slots: [FanOutSlot<Event>]
    /// The same slots, for the publisher to visit without reference counting.
    @usableFromInline let unretainedSlots: [Unmanaged<FanOutSlot<Event>>]
    /// Set once (lock-free) when every slot before it is in use. Owns the next chunk.
    @usableFromInline let next = AtomicLazyReference<FanOutSlotChunk<Event>>()
    /// The same chunk's address (0 until set), for the publisher: the
    /// Synchronization module does not specialise `AtomicLazyReference.load`, and
    /// calling it generically (type metadata look-up, retain, release) cost more
    /// than the rest of a publish. Stored by every subscriber that goes past this
    /// chunk, before it claims a slot further on, so a subscriber is reachable
    /// through it by the time `subscribe` returns.
    @usableFromInline let nextAddress = Atomic<UInt>(0)

    init() {
        slots = (0..<16).map { _ in FanOutSlot() }
        unretainedSlots = slots.map { Unmanaged.passUnretained($0) }
    }
}

import Dispatch
import Synchronization

/// One subscriber's bounded single-producer/single-consumer queue, plus the
/// parking protocol that lets the producer wake a waiting consumer without a lock.
///
/// Producer: the fan-out's publisher (one thread at a time, serialised by
/// `FanOut`). Consumer: the subscription's iterator or callback thread (one at a
/// time, enforced by `FanOutConsumer`). Wakers: the producer, `cancel()` and
/// task-cancellation handlers, from any thread.
///
/// Each slot is written only by the producer and read only by the consumer, and
/// the hand-off goes through the `tail`/`head` indices with release/acquire, so
/// refcounted values (strings, arrays) are never read torn or freed early.
///
/// The producer's path is `@inlinable` (with what it touches `@usableFromInline`)
/// so that it is specialised for the event type in the publishing module:
/// unspecialised generic code would look up type metadata and go through value
/// witnesses on every push.
@usableFromInline
final class SubscriberRing<Event: Sendable>: ParkedTask, @unchecked Sendable {
    /// What a slot holds: the event, and how many events were dropped for this
    /// subscriber just before it (so the gap is reported exactly where it is).
    @usableFromInline
    struct Entry {
        @usableFromInline var missedBefore: UInt64
        @usableFromInline var event: Event

        @usableFromInline
        init(missedBefore: UInt64, event: Event) {
            self.missedBefore = missedBefore
            self.event = event
        }
    }

    /// How a parked consumer is woken.
    @usableFromInline
    enum Parking {
        /// An async consumer; its continuation lives in `continuation`.
        case task
        /// A thread consumer blocked on this semaphore.
        case thread(DispatchSemaphore)
    }


    @usableFromInline let capacity: Int
    @usableFromInline let mask: Int
    @usableFromInline let storage: UnsafeMutablePointer<Entry>
    private let parking: Parking

    // Written by the producer only.
    @usableFromInline let tail = Atomic<Int>(0)
    /// Events dropped since the last successful push. Only the producer writes it;
    /// the consumer reads it only after observing `closed`, when the producer has
    /// stopped, so relaxed accesses suffice (the `closed` release/acquire orders them).
    @usableFromInline let missed = Atomic<UInt64>(0)
    /// Producer-private copy of `head`, refreshed only when the ring looks full,
    /// to avoid touching the consumer's cache line on every push. Unchecked
    /// exclusivity here and on the other single-owner fields below: one thread
    /// owns each by the ring's protocol, and the runtime's dynamic check was a
    /// call (thread-local access set) on every push and pop.
    @exclusivity(unchecked) @usableFromInline var cachedHead = 0

    // Written by the consumer only.
    @usableFromInline let head = Atomic<Int>(0)
    /// Consumer-private copy of `tail`, refreshed only when the ring looks empty.
    @exclusivity(unchecked) @usableFromInline var cachedTail = 0

    /// Set once by the producer (`FanOut.finish`) or by a subscriber that joined a finished fan-out.
    @usableFromInline let closed = Atomic<Bool>(false)
    /// Set once when the subscription is cancelled (by `cancel()` or task cancellation).
    @usableFromInline let cancelled = Atomic<Bool>(false)

    /// `idle` or `parked`. Exactly one party moves it from `parked` to `idle`
    /// (by compare-exchange), and that party resumes the consumer: no lost and
    /// no double wake-ups.
    @usableFromInline let parkState = Atomic<Int>(0)
    // The parked continuation lives in `ParkedTask.continuation`.

    init(capacity requested: Int, parking: Parking) {
        // A power of two lets indices run free and wrap with a mask.
        var capacity = 1
        while capacity < requested { capacity <<= 1 }
        self.capacity = capacity
        self.mask = capacity - 1
        self.storage = .allocate(capacity: capacity)
        self.parking = parking
        super.init()
    }

    deinit {
        // Nobody else can reach the ring now; drop whatever was never consumed.
        let h = head.load(ordering: .relaxed)
        let t = tail.load(ordering: .relaxed)
        var i = h
        while i != t {
            (storage + (i & mask)).deinitialize(count: 1)
            i &+= 1
        }
        storage.deallocate()
    }

    // MARK: Producer

    /// Queues `event`, or counts it as missed if the ring is full. Never blocks.
    /// Returns whether the event was queued.
    /// `deferWake`: a parked async consumer is resumed by `FanOutResumer`
    /// (the publisher neither allocates nor takes the runtime's locks);
    /// false: by the publisher itself, one thread hop sooner.
    @inlinable @discardableResult
    func push(_ event: Event, deferWake: Bool = true) -> Bool {
        // Relaxed: only this thread (the producer) ever writes `tail`.
        let t = tail.load(ordering: .relaxed)
        if t &- cachedHead == capacity {
            // Acquire: the consumer's move out of the slot we are about to reuse
            // must happen-before we overwrite it (pairs with the release in `pop`).
            cachedHead = head.load(ordering: .acquiring)
            if t &- cachedHead == capacity {
                missed.store(missed.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
                return false
            }
        }
        let m = missed.load(ordering: .relaxed)
        if m != 0 { missed.store(0, ordering: .relaxed) }
        (storage + (t & mask)).initialize(to: Entry(missedBefore: m, event: event))
        // Release: the slot's contents happen-before the consumer's acquire of
        // `tail`. Sequentially consistent as well, because with the load of
        // `parkState` below it forms the store/load (Dekker) pattern against the
        // consumer's "store parked, then re-check tail": in the single total order
        // at least one side sees the other, so a wake-up is never lost.
        tail.store(t &+ 1, ordering: .sequentiallyConsistent)
        wake(fromPublisher: deferWake)
        return true
    }

    /// Ends the stream after what is queued (idempotent). Producer, or the
    /// subscriber itself when it joined an already finished fan-out.
    func close() {
        // Release so the consumer that acquires `closed` sees every push and the
        // final `missed`; sequentially consistent for the Dekker pattern with
        // parking, as in `push`.
        closed.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    /// Marks the subscription cancelled and wakes a parked consumer. Any thread.
    func cancel() {
        cancelled.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    /// Wakes the consumer if it is parked. Any thread; lock-free. The publisher
    /// hands an async consumer's resume to `FanOutResumer` (see there why);
    /// others resume directly.
    @inlinable
    func wake(fromPublisher: Bool = false) {
        // Sequentially consistent: the second half of the Dekker pattern (see `push`).
        // The common case (consumer busy, not parked) costs one plain load.
        guard parkState.load(ordering: .sequentiallyConsistent) == ParkState.parked else { return }
        wakeParked(fromPublisher: fromPublisher)
    }

    /// The rest of `wake`, out of line: the consumer looked parked.
    @usableFromInline
    func wakeParked(fromPublisher: Bool) {
        // Acquire: pairs with the consumer's release of `parked`, so the
        // continuation it stored just before is visible to us.
        if parkState.compareExchange(expected: ParkState.parked, desired: ParkState.idle,
                                     ordering: .acquiring).exchanged {
            resumeConsumer(deferred: fromPublisher)
        }
    }

    private func resumeConsumer(deferred: Bool) {
        switch parking {
        case .task:
            // Read by exactly one winner of the exchange (or the resumer it hands
            // over to); the consumer writes it again only after being resumed.
            if deferred {
                FanOutResumer.shared.resume(self)
            } else {
                resumeExternally()
            }
        case .thread(let semaphore):
            // An atomic increment, plus a futex wake only if the thread sleeps.
            semaphore.signal()
        }
    }

    // MARK: Consumer

    /// Takes the oldest queued entry, if any.
    @inlinable
    func pop() -> Entry? {
        // Relaxed: only this thread (the consumer) ever writes `head`.
        let h = head.load(ordering: .relaxed)
        if h == cachedTail {
            // Acquire: pairs with the producer's release of `tail`, so the entry is
            // fully written before we read it.
            cachedTail = tail.load(ordering: .acquiring)
            if h == cachedTail { return nil }
        }
        let entry = (storage + (h & mask)).move()
        // Release: our move out happens-before the producer reuses this slot
        // (pairs with the acquire of `head` in `push`).
        head.store(h &+ 1, ordering: .releasing)
        return entry
    }

    /// Whether the consumer has anything to act on. Sequentially consistent loads:
    /// the consumer's half of the Dekker pattern (see `push`).
    private func hasWork() -> Bool {
        tail.load(ordering: .sequentiallyConsistent) != head.load(ordering: .relaxed)
            || closed.load(ordering: .sequentiallyConsistent)
            || cancelled.load(ordering: .sequentiallyConsistent)
    }

    /// Consumer-private: external resumes this consumer has been through.
    @exclusivity(unchecked) private var externalResumesSeen = 0

    /// Suspends the calling task until there is work (an entry, close or cancel).
    /// May return spuriously; callers re-check.
    @usableFromInline
    func parkTask() async {
        // Wait until every earlier resume by another thread has returned before
        // reusing the continuation (see `ParkedTask.externalResumesDone`). Almost
        // always already true; otherwise the resumer is a few instructions away.
        while externalResumesDone.load(ordering: .acquiring) != externalResumesSeen {
            await Task.yield()
        }
        let resumedBySelf = await withTaskCancellationHandler {
            await withUnsafeContinuation { (c: UnsafeContinuation<Bool, Never>) in
                continuation = c
                // Release publishes `continuation` to the waker; sequentially
                // consistent so that the re-check below and a waker's check of
                // `parkState` cannot both miss each other.
                parkState.store(ParkState.parked, ordering: .sequentiallyConsistent)
                if hasWork(),
                   parkState.compareExchange(expected: ParkState.parked, desired: ParkState.idle,
                                             ordering: .relaxed).exchanged {
                    // We un-parked ourselves; no waker will touch `c`.
                    c.resume(returning: true)
                }
                // Otherwise a waker won the exchange (or will) and resumes `c`.
            }
        } onCancel: {
            self.cancel()
        }
        if !resumedBySelf { externalResumesSeen += 1 }
    }

    /// Blocks the calling (dedicated) thread until there is work. May return
    /// spuriously; callers re-check.
    @usableFromInline
    func parkThread() {
        guard case .thread(let semaphore) = parking else {
            preconditionFailure("parkThread on a ring made for a task consumer")
        }
        parkState.store(ParkState.parked, ordering: .sequentiallyConsistent)
        if hasWork(),
           parkState.compareExchange(expected: ParkState.parked, desired: ParkState.idle,
                                     ordering: .relaxed).exchanged {
            return
        }
        // A waker won the exchange and signals (or already did): consume that
        // signal so the semaphore stays balanced.
        semaphore.wait()
    }
}

/// Values of `SubscriberRing.parkState` (outside the generic class, see `SlotState`).
@usableFromInline
enum ParkState {
    @inlinable static var idle: Int { 0 }
    @inlinable static var parked: Int { 1 }
}

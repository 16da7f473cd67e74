import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// A broadcast of events to any number of subscribers, with no lock on the
/// publishing path.
///
/// - **One publisher at a time.** `publish(_:)` and `finish()` must not run
///   concurrently with each other (the pipeline serialises them); successive
///   calls may come from different threads. A detected overlap traps.
///   Subscribing and cancelling are allowed from any thread at any time.
/// - **Never waits.** Each subscriber has its own bounded queue (capacity fixed at
///   subscribe time). Publishing copies the event into each queue and never
///   blocks; in steady state it allocates nothing (for an `Event` that is not
///   heap-backed, such as ``InlineBytes``; a refcounted event costs one retain per
///   subscriber).
/// - **No silent gaps.** When a subscriber's queue is full its events are
///   dropped and counted; the subscriber then receives ``Delivery/overflow(missed:)``
///   exactly where the dropped events would have been (before the next event that
///   fits, or before the end of the stream), and can resync (for example from a
///   fresh snapshot). Other subscribers and the publisher are unaffected.
/// - **Ending.** ``finish()`` ends every stream after its queued events are delivered;
///   later subscribers get an empty, finished stream.
/// - **Waking.** A consumer that found its queue empty parks; the publisher wakes
///   it with one compare-exchange. A callback subscription's thread is then
///   signalled through a semaphore; an async subscription's continuation is
///   resumed by a shared resumer thread (the runtime's job enqueue allocates),
///   which costs one extra thread hop only when the consumer was parked.
///
/// Events published concurrently with `subscribe` may or may not reach the new
/// subscriber; everything published after `subscribe` returns does, in order.
public final class FanOut<Event: Sendable>: Sendable {
    /// What a subscriber receives.
    public enum Delivery: Sendable {
        /// The next event.
        case event(Event)
        /// `missed` events were dropped here because this subscriber's queue was
        /// full; what follows is newer. Resync if you need the full state.
        case overflow(missed: UInt64)
    }

    /// The queue capacity used when `subscribe` is not given one.
    public static var defaultCapacity: Int { 256 }
    /// The largest queue capacity; larger requests are clamped to it.
    public static var maximumCapacity: Int { 1 << 20 }

    // Internal with @usableFromInline: `publish` is inlinable so that it is
    // specialised for the event type in the publishing module.
    @usableFromInline let firstChunk = FanOutSlotChunk<Event>()
    @usableFromInline let finished = Atomic<Bool>(false)
    /// Set for the duration of a `publish`/`finish`; detects overlapping publishers
    /// and carries happens-before between successive publisher threads.
    @usableFromInline let publishing = Atomic<Bool>(false)

    /// Whether `publish` resumes a parked async subscriber itself.
    @usableFromInline let resumesOnPublisherThread: Bool

    /// Creates a fan-out with no subscribers.
    /// - Parameter resumesOnPublisherThread: false (the default): a parked
    ///   async subscriber is resumed by a shared resumer thread, so `publish`
    ///   never allocates nor takes a lock of the Swift runtime's, at the cost
    ///   of one more thread hop to the subscriber. True: `publish` resumes it
    ///   (enqueues its task) itself, which is sooner, for a publisher whose
    ///   events are rare and whose subscribers wait for them (device arrivals).
    public init(resumesOnPublisherThread: Bool = false) {
        self.resumesOnPublisherThread = resumesOnPublisherThread
    }

    // MARK: Publishing (one publisher at a time)

    /// Delivers `event` to every current subscriber's queue. Never blocks and takes
    /// no lock; a subscriber whose queue is full has the event counted as missed.
    /// Ignored after ``finish()``.
    @inlinable
    public func publish(_ event: Event) {
        beginPublishing()
        defer { endPublishing() }
        // Relaxed: only the publisher sets `finished`, and we are the publisher.
        if finished.load(ordering: .relaxed) { return }
        // Explicit loops rather than closures: nothing here may allocate.
        // Unretained: chunks live as long as the fan-out (each owns the next).
        var chunk = Unmanaged.passUnretained(firstChunk)
        while true {
            let next = chunk._withUnsafeGuaranteedRef { chunk -> UInt in
                // Indexing, not `for slot in slots`: in debug builds that iterator
                // allocates for an array of generic class instances.
                for i in 0..<chunk.unretainedSlots.count {
                    // Unretained: the chunk owns its slots for the fan-out's lifetime, and
                    // reference counting on every slot dominated the cost of a publish.
                    // (Non-escaping closures live on the stack, so this does not allocate.)
                    chunk.unretainedSlots[i]._withUnsafeGuaranteedRef { slot in
                        if slot.enter() {
                            _ = slot.unretainedRing._withUnsafeGuaranteedRef { ring in ring.push(event, deferWake: !resumesOnPublisherThread) }
                            slot.leave()
                        }
                    }
                }
                // Acquire: a chunk appended by a subscriber is fully initialised.
                return chunk.nextAddress.load(ordering: .acquiring)
            }
            guard let raw = UnsafeRawPointer(bitPattern: next) else { return }
            chunk = Unmanaged<FanOutSlotChunk<Event>>.fromOpaque(raw)
        }
    }

    /// Ends every subscriber's stream once its queued events are delivered.
    /// Idempotent. Publisher-side: must not overlap with `publish`.
    public func finish() {
        beginPublishing()
        defer { endPublishing() }
        // Sequentially consistent: with the slot-state loads below, and with
        // `subscribe`'s "store active, then load finished", at least one side sees
        // the other, so no subscriber is left open forever.
        if finished.exchange(true, ordering: .sequentiallyConsistent) { return }
        forEachSlot { slot in
            if slot.enter() {
                slot.ring.unsafelyUnwrapped.close()
                slot.leave()
            }
        }
    }

    @inlinable
    func beginPublishing() {
        // Acquire: a previous publisher thread's writes to producer-private state
        // (ring caches and drop counters) happen-before ours.
        let overlapping = publishing.exchange(true, ordering: .acquiring)
        precondition(!overlapping, "FanOut.publish/finish called concurrently: publishing must be serialised (one publisher at a time).")
    }

    @inlinable
    func endPublishing() {
        publishing.store(false, ordering: .releasing)
    }

    private func forEachSlot(_ body: (FanOutSlot<Event>) -> Void) {
        var chunk: FanOutSlotChunk<Event>? = firstChunk
        while let current = chunk {
            for i in 0..<current.slots.count { body(current.slots[i]) }
            chunk = current.next.load()
        }
    }

    // MARK: Subscribing (any thread)

    /// Subscribes with an `AsyncSequence` of deliveries.
    ///
    /// The subscription is left (its slot freed) when its stream ends, on
    /// ``Subscription/cancel()``, when the iterating task is cancelled, or when the
    /// subscription and its iterators are released.
    /// - Parameter capacity: queue length, rounded up to a power of two and clamped
    ///   to `1...maximumCapacity`.
    public func subscribe(capacity: Int = FanOut.defaultCapacity) -> Subscription {
        Subscription(consumer: makeConsumer(capacity: capacity, parking: .task))
    }

    /// Subscribes with a callback invoked on a thread owned by this subscription,
    /// so a slow callback delays only its own deliveries.
    ///
    /// `handler` is called serially, in order. `onStart`, if given, is called on
    /// that thread before the first delivery (to hand over a snapshot taken
    /// under the caller's lock, ahead of every later event). `onEnd`, if given, is called on the
    /// same thread after the last delivery, when the fan-out finished or the
    /// subscription was cancelled; then the thread exits. Releasing the returned
    /// token cancels the subscription.
    /// - Parameters:
    ///   - capacity: queue length, as in ``subscribe(capacity:)``.
    ///   - name: a label for the delivery thread, shown as `fanout-<name>` in
    ///     debuggers and `ps` (cut to Linux's 15 bytes).
    ///   - onStart: called first on the delivery thread, before any delivery.
    ///   - onEnd: called last on the delivery thread, after the last delivery.
    ///   - handler: called with each delivery, in order, on the delivery thread.
    @inlinable
    public func subscribe(
        capacity: Int = FanOut.defaultCapacity,
        name: String = "subscriber",
        onStart: (@Sendable () -> Void)? = nil,
        onEnd: (@Sendable () -> Void)? = nil,
        handler: @escaping @Sendable (Delivery) -> Void
    ) -> CallbackSubscription {
        let consumer = makeConsumer(capacity: capacity, parking: .thread(DispatchSemaphore(value: 0)))
        // Linux thread names hold 15 bytes; keep it ASCII so the cut is clean.
        let threadName = String(String.UnicodeScalarView(
            "fanout-\(name)".unicodeScalars.filter(\.isASCII).prefix(15)))
        FanOut.startThread(named: threadName) {
            onStart?()
            while let delivery = consumer.nextBlocking() { handler(delivery) }
            onEnd?()
        }
        return CallbackSubscription(consumer: consumer)
    }

    /// Runs `body` on a thread of its own named `name` (a serial queue's
    /// work item: libdispatch gives each a thread while it blocks).
    @usableFromInline
    static func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
        DispatchQueue(label: name).async {
            nameCurrentThread(name)
            body()
        }
    }

    /// How many subscriptions are currently attached (a diagnostic; it may be
    /// stale by the time it returns).
    public var subscriberCount: Int {
        var n = 0
        forEachSlot { if $0.isSubscribed { n += 1 } }
        return n
    }

    @usableFromInline
    func makeConsumer(capacity: Int, parking: SubscriberRing<Event>.Parking) -> FanOutConsumer<Event> {
        let ring = SubscriberRing<Event>(capacity: min(max(capacity, 1), Self.maximumCapacity),
                                         parking: parking)
        let slot = claimSlot()
        slot.install(ring)
        // Sequentially consistent: `install` stored `active`, now we look at
        // `finished`; `finish` does the opposite. If `finish` missed our slot, we
        // see `finished` here and end the stream ourselves.
        if finished.load(ordering: .sequentiallyConsistent) { ring.close() }
        return FanOutConsumer(ring: ring, slot: slot)
    }

    private func claimSlot() -> FanOutSlot<Event> {
        var chunk = firstChunk
        while true {
            for slot in chunk.slots where slot.tryClaim() { return slot }
            // Lock-free append; if another subscriber won, use its chunk.
            let next = chunk.next.load() ?? chunk.next.storeIfNil(FanOutSlotChunk())
            // Release: the new chunk's initialisation happens-before the publisher
            // follows this address. Every subscriber going past stores it (the same
            // value), so it is set before any slot of `next` can be installed.
            chunk.nextAddress.store(UInt(bitPattern: Unmanaged.passUnretained(next).toOpaque()),
                                    ordering: .releasing)
            chunk = next
        }
    }
}

extension FanOut {
    /// An `AsyncSequence` of one subscriber's deliveries. Iterate it from one task
    /// at a time (it has a single queue; concurrent iteration traps).
    public final class Subscription: AsyncSequence, Sendable {
        public typealias Element = Delivery
        public typealias Failure = Never

        @usableFromInline let consumer: FanOutConsumer<Event>

        @usableFromInline
        init(consumer: FanOutConsumer<Event>) { self.consumer = consumer }

        deinit { consumer.cancel() }

        /// Leaves the fan-out: queued events are discarded and iteration ends.
        /// Any thread; idempotent.
        public func cancel() { consumer.cancel() }

        @inlinable
        public func makeAsyncIterator() -> Iterator { Iterator(subscription: self) }

        /// Iterates the deliveries; `nil` when the stream has ended.
        public struct Iterator: AsyncIteratorProtocol {
            /// What ``next()`` returns: an event, or an overflow notice.
            public typealias Element = Delivery
            public typealias Failure = Never

            // Keeps the subscription (and so the slot) alive while iterating.
            @usableFromInline let subscription: Subscription

            @usableFromInline
            init(subscription: Subscription) { self.subscription = subscription }

            @inlinable
            public mutating func next() async -> Delivery? {
                await subscription.consumer.next(isolation: nil)
            }

            @inlinable
            public mutating func next(isolation actor: isolated (any Actor)?) async -> Delivery? {
                await subscription.consumer.next(isolation: actor)
            }
        }
    }

    /// The token for a callback subscription. Releasing it cancels the subscription.
    public final class CallbackSubscription: Sendable {
        @usableFromInline let consumer: FanOutConsumer<Event>

        @usableFromInline
        init(consumer: FanOutConsumer<Event>) { self.consumer = consumer }

        deinit { consumer.cancel() }

        /// Leaves the fan-out: queued events are discarded and `onEnd` runs. Any
        /// thread, including the handler itself; idempotent; does not wait, so a
        /// delivery already taken from the queue may still reach the handler once.
        public func cancel() { consumer.cancel() }
    }
}

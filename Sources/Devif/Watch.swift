import DevifCore

/// What a watcher receives after its snapshot.
public enum WatchUpdate: Sendable {
    /// An arrival or removal that matches the watch's filter.
    case event(InterfaceEvent)
    /// The watcher fell behind and `missed` events were dropped here; call
    /// ``DeviceManager/interfaces(_:)`` to resync.
    case overflow(missed: UInt64)
}

/// A snapshot of the present instances plus the changes after it: every
/// instance is in exactly one of them (no gap, no duplicate).
public struct InterfaceWatch: Sendable {
    /// The instances present when the watch began, as arrival events in the
    /// order they arrived (with their original sequence numbers).
    public let snapshotEvents: [InterfaceEvent]
    let subscription: FanOut<InterfaceEvent>.Subscription
    let filter: InterfaceFilter

    /// The present instances when the watch began.
    public var snapshot: [DeviceInterface] { snapshotEvents.map(\.interface) }

    /// Arrivals and removals after the snapshot, and overflow notices. Ends
    /// when the manager stops, the watch is cancelled, or the iterating task
    /// is cancelled.
    public var updates: Updates { Updates(subscription: subscription, filter: filter) }

    /// Stops the watch and frees its queue.
    public func cancel() { subscription.cancel() }

    /// The changes after a watch's snapshot, as an async sequence of
    /// ``WatchUpdate``s (see ``InterfaceWatch/updates``).
    public struct Updates: AsyncSequence, Sendable {
        public typealias Element = WatchUpdate
        public typealias Failure = Never
        let subscription: FanOut<InterfaceEvent>.Subscription
        let filter: InterfaceFilter

        public func makeAsyncIterator() -> Iterator {
            Iterator(base: subscription.makeAsyncIterator(), filter: filter)
        }

        /// Iterates ``InterfaceWatch/Updates``: ``next()`` waits for the next
        /// change that matches the filter, or an overflow; nil once the watch ended.
        public struct Iterator: AsyncIteratorProtocol {
            var base: FanOut<InterfaceEvent>.Subscription.Iterator
            let filter: InterfaceFilter

            public mutating func next() async -> WatchUpdate? {
                while let delivery = await base.next() {
                    switch delivery {
                    case .event(let e): if filter.matches(e.interface) { return .event(e) }
                    case .overflow(let missed): return .overflow(missed: missed)
                    }
                }
                return nil
            }
        }
    }
}

/// Keeps a callback watch alive; cancel it (or release it) to stop.
public final class WatchToken: Sendable {
    let subscription: FanOut<InterfaceEvent>.CallbackSubscription
    init(subscription: FanOut<InterfaceEvent>.CallbackSubscription) { self.subscription = subscription }
    /// Stops the callbacks. Any thread, including the handler itself;
    /// idempotent; does not wait, so one change already taken may still reach
    /// the handler.
    public func cancel() { subscription.cancel() }
}

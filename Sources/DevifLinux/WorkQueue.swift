// The blocking queue between producers on other threads (libusb's hotplug
// callback, a uevent monitor, the sources' sinks) and the one thread that
// drains it (the USB assembler, the manager's pipeline).
import Dispatch
import Synchronization

/// A FIFO that one thread (or a few workers) drains, blocking while it is empty.
public final class WorkQueue<Item: Sendable>: Sendable {
    private struct State {
        var items = FIFO<Item>()
        var closed = false
    }
    private let state = Mutex(State())
    private let ready = DispatchSemaphore(value: 0)

    public init() {}

    /// Appends an item; false (and nothing queued) once closed.
    @discardableResult
    public func post(_ item: Item) -> Bool {
        let posted = state.withLock { s in
            guard !s.closed else { return false }
            s.items.append(item)
            return true
        }
        if posted { ready.signal() }
        return posted
    }

    /// Appends `make()` only if the queue is open, calling `make` under the
    /// queue's lock: for work that must not happen once it is closed (taking a
    /// device reference that nobody would drop).
    public func postIfOpen(_ make: () -> Item) -> Bool {
        let posted = state.withLock { s in
            guard !s.closed else { return false }
            s.items.append(make())
            return true
        }
        if posted { ready.signal() }
        return posted
    }

    /// The next item, blocking while the queue is empty; nil once closed.
    public func next() -> Item? {
        while true {
            ready.wait()
            let item: Item?? = state.withLock { s in
                if s.closed { return .some(nil) }  // (and wake the next waiter, below)
                guard let item = s.items.popFirst() else { return nil }  // a leftover wake-up
                return .some(item)
            }
            if let item {
                if item == nil { ready.signal() }  // closed: every waiting thread must see it
                return item
            }
        }
    }

    /// Whether nothing is queued now (the consumer uses it to tell a burst
    /// from a lone item).
    public var isEmpty: Bool { state.withLock { $0.items.isEmpty } }

    /// Removes and returns everything queued now, without blocking (a
    /// consumer gathering a batch after `next()`).
    public func takeAll() -> [Item] {
        state.withLock { $0.items.removeAll() }
        // The semaphore keeps the counts; next() skips them.
    }

    /// Closes the queue, wakes the consumer, and returns what was still queued.
    @discardableResult
    public func close() -> [Item] {
        let rest = state.withLock { s in
            s.closed = true
            return s.items.removeAll()
        }
        ready.signal()
        return rest
    }
}

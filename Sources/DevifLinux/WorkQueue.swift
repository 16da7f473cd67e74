// The blocking queue between producers on other threads (libusb's hotplug
// callback, a uevent monitor, the sources' sinks) and the one thread that
// drains it (the USB assembler, the manager's pipeline).
import Dispatch
import Synchronization

/// A FIFO that one thread (or a few workers) drains, blocking while it is empty.
public final class WorkQueue<Item: Sendable>: Sendable {
    private struct State {
        var items: [Item] = []
        var head = 0
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
                guard s.head < s.items.count else { return nil }  // a leftover wake-up
                let item = s.items[s.head]
                s.head += 1
                if s.head > 64, s.head * 2 > s.items.count {
                    s.items.removeFirst(s.head)
                    s.head = 0
                }
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
    public var isEmpty: Bool { state.withLock { $0.head >= $0.items.count } }

    /// Removes and returns the first queued item matching `predicate`.
    public func removeFirst(where predicate: (Item) -> Bool) -> Item? {
        state.withLock { s in
            guard let i = s.items[s.head...].firstIndex(where: predicate) else { return nil }
            return s.items.remove(at: i)
        }
        // The semaphore keeps one extra count; next() skips it.
    }

    /// Removes and returns everything queued now, without blocking (a
    /// consumer gathering a batch after `next()`).
    public func takeAll() -> [Item] {
        state.withLock { s in
            defer { s.items = []; s.head = 0 }
            return Array(s.items[s.head...])
        }
        // The semaphore keeps the counts; next() skips them.
    }

    /// Closes the queue, wakes the consumer, and returns what was still queued.
    @discardableResult
    public func close() -> [Item] {
        let rest = state.withLock { s in
            s.closed = true
            let rest = Array(s.items[s.head...])
            s.items = []
            s.head = 0
            return rest
        }
        ready.signal()
        return rest
    }
}

import Foundation
import Synchronization

/// An unbounded multi-producer queue that one thread drains. Sources put
/// from their own threads and never wait for the pipeline; `take` parks on a
/// semaphore rather than spinning.
final class WorkQueue<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var head = 0
        var closed = false
    }
    private let state = Mutex(State())
    private let ready = DispatchSemaphore(value: 0)

    func put(_ element: Element) {
        let accepted = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.items.append(element)
            return true
        }
        if accepted { ready.signal() }
    }

    /// The next element, or nil once closed and drained.
    func take() -> Element? {
        while true {
            let next = state.withLock { s -> Element?? in
                if s.head < s.items.count {
                    let e = s.items[s.head]
                    s.head += 1
                    // Compact now and then so memory does not grow with history.
                    if s.head > 1024 && s.head * 2 > s.items.count {
                        s.items.removeFirst(s.head)
                        s.head = 0
                    }
                    return .some(e)
                }
                return s.closed ? .some(nil) : .none
            }
            if let next { return next }
            ready.wait()
        }
    }

    func close() {
        state.withLock { $0.closed = true }
        ready.signal()
    }
}

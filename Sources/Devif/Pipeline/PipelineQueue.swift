import DevifLinux
import Dispatch
import Synchronization

/// The pipeline's events in submission order, applied one at a time: by the
/// pipeline's thread, or, when nothing is queued and nothing is being
/// applied, by the thread that submits (a source's worker), so a lone
/// arrival is published without waking another thread (in the lab VM that
/// wake was about 0.2 ms of a single plug's 2 ms).
///
/// One lock holds both the queue and the turn (who applies now), so an item
/// the thread has taken is always applied before a later one is claimed
/// inline: taking an item and claiming the turn are one step.
final class PipelineQueue<Item: Sendable>: Sendable {
    private struct State {
        var items = FIFO<Item>()
        /// Someone (the thread or a submitter) is applying an item.
        var busy = false
        /// Inline turns only once the thread runs: until then, everything
        /// queues (a burst before start is applied, and committed, as one).
        var started = false
        var closed = false
        /// The busy turn is a submitter's.
        var inline = false
        /// Signalled when an inline turn ends after `close()`.
        var closeWaiter: DispatchSemaphore?
    }
    private let state = Mutex(State())
    /// Signalled at each change that may let the thread take an item.
    private let ready = DispatchSemaphore(value: 0)

    init() {}

    /// What a submitter does with its item.
    enum Turn {
        /// Apply it now on this thread, then call ``finishInline()``.
        case inline
        /// Queued for the pipeline's thread.
        case queued
        /// Closed: dropped.
        case dropped
    }

    /// Claims the turn for `item` when nothing is queued and nothing is
    /// being applied (and `inlineAllowed`); queues it otherwise.
    func submit(_ item: Item, inlineAllowed: Bool) -> Turn {
        let turn = state.withLock { s -> Turn in
            if s.closed { return .dropped }
            if inlineAllowed, s.started, !s.busy, s.items.isEmpty {
                s.busy = true
                s.inline = true
                return .inline
            }
            s.items.append(item)
            return .queued
        }
        if case .queued = turn { ready.signal() }
        return turn
    }

    /// Ends an inline turn; wakes the thread if items queued meanwhile.
    func finishInline() {
        let (pending, waiter) = state.withLock { s in
            s.busy = false
            s.inline = false
            defer { s.closeWaiter = nil }
            return (!s.items.isEmpty, s.closeWaiter)
        }
        if pending { ready.signal() }
        waiter?.signal()
    }

    /// Lets submitters apply inline from now on.
    func markStarted() { state.withLock { $0.started = true } }

    /// The thread's next item, with the turn (end it with ``finishTaken()``);
    /// blocks while the queue is empty or a submitter applies; nil once closed.
    func next() -> Item? {
        while true {
            let taken = state.withLock { s -> Item?? in
                if s.closed { return .some(nil) }
                guard !s.busy, let item = s.items.popFirst() else { return nil }
                s.busy = true
                return .some(item)
            }
            if let taken { return taken }
            // Every change that can let this thread on signals (submit,
            // finishInline with items left, close); extra counts only
            // cost a look.
            ready.wait()
        }
    }

    /// Ends the thread's turn.
    func finishTaken() { state.withLock { $0.busy = false } }

    /// Whether nothing is queued now (the thread tells a burst from a lone item).
    var isEmpty: Bool { state.withLock { $0.items.isEmpty } }

    /// Closes the queue (what is queued is dropped), wakes the thread and
    /// returns once no submitter applies an item: nothing is applied inline
    /// after it. Not to be called from an inline turn.
    func close() {
        let waiter = state.withLock { s -> DispatchSemaphore? in
            s.closed = true
            _ = s.items.removeAll()
            guard s.inline else { return nil }
            let waiter = DispatchSemaphore(value: 0)
            s.closeWaiter = waiter
            return waiter
        }
        ready.signal()
        waiter?.wait()
    }
}

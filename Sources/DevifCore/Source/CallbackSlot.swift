import Synchronization

/// One replaceable callback that any thread may call: a source's sink, the
/// pipeline's "a device left" handler.
///
/// The function lives in a class box, not directly in a `Mutex`: Swift 6.3
/// wraps a function value that is a `Mutex`'s generic value in two more
/// reabstraction thunks every time a `withLock` body touches it, even only to
/// read it (swiftlang/swift#91348). Each call through such a slot allocated
/// 64 bytes that stayed, ran through a longer chain than the last, and after
/// some hundred thousand calls would overflow the stack. A class reference
/// crosses the generic boundary unchanged.
public final class CallbackSlot<Argument>: Sendable {
    private final class Box: Sendable {
        let call: @Sendable (Argument) -> Void
        init(_ call: @escaping @Sendable (Argument) -> Void) { self.call = call }
    }

    private let box = Mutex<Box?>(nil)

    /// An empty slot: calling it does nothing until ``set(_:)``.
    public init() {}

    /// Sets the callback, or clears it with nil.
    public func set(_ callback: (@Sendable (Argument) -> Void)?) {
        let new = callback.map(Box.init)
        box.withLock { $0 = new }
    }

    /// Calls the callback, if one is set, outside the lock (it may call
    /// `set` itself). False when none is set.
    @discardableResult
    public func call(_ argument: Argument) -> Bool {
        guard let current = box.withLock({ $0 }) else { return false }
        current.call(argument)
        return true
    }

    /// Calls the callback while holding the lock, so no call begins after a
    /// `set(nil)` returns (a source's promise on `stop()`). The callback must
    /// not touch this slot. False when none is set.
    @discardableResult
    public func callHoldingLock(_ argument: Argument) -> Bool {
        box.withLock { current in
            guard let current else { return false }
            current.call(argument)
            return true
        }
    }
}

/// A weak reference that closures and locked state can hold. A `let`
/// (Swift 6.2's `weak let`), so reading it costs no exclusivity check: a
/// `[weak x]` capture is a variable, and each use of one in a transfer's
/// completion paid the runtime's access check (a thread-local lookup),
/// seen in `perf` of the event thread.
package final class WeakReference<Object: AnyObject & Sendable>: Sendable {
    package weak let object: Object?
    package init(_ object: Object) { self.object = object }
}

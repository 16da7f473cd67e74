import Synchronization

/// A small value naming one open resource in a ``HandleTable``: a slot index and
/// the generation of that slot when it was opened. Once the handle is closed (or
/// its slot reused) the generation no longer matches, so the handle fails
/// cleanly instead of reaching someone else's resource.
public struct Handle: Sendable, Hashable, CustomStringConvertible {
    /// The slot in the table.
    public let index: UInt32
    /// The slot's generation when this handle was issued (never 0).
    public let generation: UInt32

    /// Makes a handle from its parts (e.g. parsed back from a log or the CLI).
    public init(index: UInt32, generation: UInt32) {
        self.index = index
        self.generation = generation
    }

    /// `index.generation`, e.g. `3.17`.
    public var description: String { "\(index).\(generation)" }
}

/// Why a ``HandleTable`` refused a handle.
public enum HandleTableError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The handle is not open: it was closed (closing twice lands here too), its
    /// slot was reused, or this table never issued it.
    case staleHandle(Handle)
    /// The handle is still open but its device went away; close it, and open the
    /// device again (e.g. by its symbolic link) when it comes back.
    case deviceRemoved(Handle)
    /// Every slot is in use.
    case tableFull(capacity: Int)

    public var description: String {
        switch self {
        case .staleHandle(let h):
            return "handle \(h) is not open (it was closed, or its slot was reused); open the device again to get a new handle"
        case .deviceRemoved(let h):
            return "the device behind handle \(h) was removed; close the handle, and open the device again once it is back"
        case .tableFull(let capacity):
            return "all \(capacity) handles are open; close handles that are no longer needed"
        }
    }
}

/// Open resources (device handles) addressed by ``Handle``s.
///
/// - **Lookups are lock-free**: ``withResource(_:_:)`` validates the handle and
///   takes a use of the slot with one compare-exchange on the slot's state word
///   (generation, open and removed flags, use count).
/// - **Closing is safe at any time, from any thread**: ``close(_:)`` makes the
///   handle stale at once (new lookups fail), but the resource is kept until
///   every use in progress has finished; then `onRelease` runs exactly once, on
///   the thread that finished last, and the slot becomes free with a new
///   generation. Closing a handle that is not open throws
///   ``HandleTableError/staleHandle(_:)`` (so a second close is a clear error,
///   harmless to ignore).
/// - **Device removal**: ``markRemoved(where:)`` flags handles whose resource
///   belongs to a departed device; they stay open (so holders can still close
///   them) but every lookup fails fast with ``HandleTableError/deviceRemoved(_:)``.
///
/// Everything is lock-free: free slots form an atomic stack. The capacity is
/// fixed, like a process's descriptor limit.
public final class HandleTable<Resource: Sendable>: Sendable {
    /// The default number of slots.
    public static var defaultCapacity: Int { 1024 }

    @usableFromInline let slots: [HandleSlot<Resource>]
    /// The free-slot stack's top: a tag (high 32 bits) and the top slot's index + 1
    /// (low 32 bits; 0 when empty). The tag changes on every push and pop, so a
    /// compare-exchange with a stale top always fails (no ABA).
    private let freeTop: Atomic<UInt64>
    /// Slots off the free stack (open, or closed with uses still running):
    /// with none, a device's removal has nothing to scan (the scan of every
    /// slot cost a removal about 7 us natively, far more in the lab VM).
    private let taken = Atomic<Int>(0)
    private let onRelease: @Sendable (Resource) -> Void

    /// Creates an empty table.
    /// - Parameters:
    ///   - capacity: the number of slots, `1...(1 << 24)`.
    ///   - onRelease: called once for every opened resource when it is closed and
    ///     no longer in use (or when the table is deallocated), outside any lock.
    public init(capacity: Int = HandleTable.defaultCapacity,
                onRelease: @escaping @Sendable (Resource) -> Void = { _ in }) {
        precondition(capacity >= 1 && capacity <= 1 << 24,
                     "HandleTable capacity \(capacity) is outside 1...\(1 << 24)")
        // Initially every slot is free, chained 0 -> 1 -> ... -> capacity-1.
        slots = (0..<capacity).map {
            HandleSlot(index: $0, nextFree: $0 + 1 < capacity ? UInt32($0 + 2) : 0)
        }
        freeTop = Atomic(1)
        self.onRelease = onRelease
    }

    deinit {
        // Nobody else holds the table, so nothing is in use: release what is open.
        for slot in slots where slot.word.load(ordering: .acquiring) & SlotWord.open != 0 {
            if let resource = slot.resource { onRelease(resource) }
        }
    }

    /// Stores `resource` and returns a new handle for it.
    public func open(_ resource: Resource) throws(HandleTableError) -> Handle {
        guard let index = takeFreeSlot() else {
            throw .tableFull(capacity: slots.count)
        }
        let slot = slots[index]
        // The slot is off the free list, so we are its only writer.
        slot.resource = resource
        let generation = SlotWord.generation(slot.word.load(ordering: .relaxed))
        // Release: the resource is written before any lookup can acquire the open word.
        slot.word.store(SlotWord.make(generation: generation) | SlotWord.open, ordering: .releasing)
        return Handle(index: UInt32(index), generation: generation)
    }

    /// Runs `body` with the handle's resource, which stays alive (is not released)
    /// until `body` returns, even if the handle is closed meanwhile.
    /// - Throws: ``HandleTableError`` if the handle is stale or its device was
    ///   removed (then `body` does not run), or whatever `body` throws.
    /// Inlinable, so a caller's use is specialized for its resource (a
    /// transfer goes through here on every call).
    @inlinable
    public func withResource<R>(_ handle: Handle, _ body: (Resource) throws -> R) throws -> R {
        let slot = try beginUse(handle)
        defer { endUse(slot) }
        return try body(slot.resource.unsafelyUnwrapped)
    }

    /// The async form of ``withResource(_:_:)`` (e.g. for a transfer that awaits
    /// completion); the resource is kept alive across the suspension.
    @inlinable
    public func withResource<R>(
        _ handle: Handle,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (Resource) async throws -> R
    ) async throws -> R {
        let slot = try beginUse(handle)
        defer { endUse(slot) }
        return try await body(slot.resource.unsafelyUnwrapped)
    }

    /// Closes `handle`: later lookups fail with `staleHandle`; the resource is
    /// released when uses in progress finish (at once if there are none).
    /// - Throws: ``HandleTableError/staleHandle(_:)`` if it is not open (for
    ///   example, closed already). A handle marked removed can be closed.
    public func close(_ handle: Handle) throws(HandleTableError) {
        guard let slot = slot(for: handle) else { throw .staleHandle(handle) }
        var word = slot.word.load(ordering: .relaxed)
        while true {
            guard SlotWord.generation(word) == handle.generation, word & SlotWord.open != 0 else {
                throw .staleHandle(handle)
            }
            let closed = word & ~(SlotWord.open | SlotWord.removed)
            // Acquire and release: if no use is in progress we reclaim the slot now,
            // after every earlier use (their releasing decrements); otherwise the
            // last user's decrement acquires this.
            let (done, current) = slot.word.weakCompareExchange(
                expected: word, desired: closed, ordering: .acquiringAndReleasing)
            if done {
                if SlotWord.uses(closed) == 0 { reclaim(slot, word: closed) }
                return
            }
            word = current
        }
    }

    /// Marks every open handle whose resource satisfies `belongsToRemovedDevice`
    /// as removed, and returns those handles (e.g. to tell their holders and end
    /// their pending I/O). Removed handles stay open until closed, but every
    /// lookup fails fast with ``HandleTableError/deviceRemoved(_:)``. Uses in
    /// progress are not interrupted. `belongsToRemovedDevice` runs without any
    /// lock held, while the resource is kept alive.
    @discardableResult
    public func markRemoved(where belongsToRemovedDevice: (Resource) -> Bool) -> [Handle] {
        var marked: [Handle] = []
        // Acquire: pairs with the release in `takeFreeSlot`; a handle opened
        // after this load is one opened after the removal (its opener checks).
        guard taken.load(ordering: .acquiring) > 0 else { return marked }
        for index in slots.indices {
            let slot = slots[index]
            let word = slot.word.load(ordering: .relaxed)
            guard word & SlotWord.open != 0, word & SlotWord.removed == 0 else { continue }
            let handle = Handle(index: UInt32(index), generation: SlotWord.generation(word))
            // Hold a use so the resource cannot be released while we look at it.
            guard let used = try? beginUse(handle) else { continue }
            let matches = belongsToRemovedDevice(used.resource.unsafelyUnwrapped)
            if matches, setRemoved(slot, handle) { marked.append(handle) }
            endUse(used)
        }
        return marked
    }

    /// A snapshot of the open handles (including removed ones), by slot order.
    public func openHandles() -> [OpenHandle] {
        slots.indices.compactMap { index in
            let word = slots[index].word.load(ordering: .relaxed)
            guard word & SlotWord.open != 0 else { return nil }
            return OpenHandle(handle: Handle(index: UInt32(index), generation: SlotWord.generation(word)),
                              isRemoved: word & SlotWord.removed != 0)
        }
    }

    /// One entry of ``openHandles()``.
    public struct OpenHandle: Sendable, Hashable {
        /// The open handle.
        public let handle: Handle
        /// Whether its device was marked removed.
        public let isRemoved: Bool
    }

    // MARK: Internals

    @inlinable
    func slot(for handle: Handle) -> HandleSlot<Resource>? {
        Int(handle.index) < slots.count ? slots[Int(handle.index)] : nil
    }

    /// Takes a use of the handle's slot, or throws why not. Lock-free.
    @inlinable
    func beginUse(_ handle: Handle) throws(HandleTableError) -> HandleSlot<Resource> {
        guard let slot = slot(for: handle) else { throw .staleHandle(handle) }
        var word = slot.word.load(ordering: .relaxed)
        while true {
            guard SlotWord.generation(word) == handle.generation, word & SlotWord.open != 0 else {
                throw .staleHandle(handle)
            }
            guard word & SlotWord.removed == 0 else { throw .deviceRemoved(handle) }
            precondition(SlotWord.uses(word) < SlotWord.maxUses, "too many concurrent uses of handle \(handle)")
            // Acquire: pairs with `open`'s release, so the resource is visible.
            let (done, current) = slot.word.weakCompareExchange(
                expected: word, desired: word + 1, ordering: .acquiring)
            if done { return slot }
            word = current
        }
    }

    @inlinable
    func endUse(_ slot: HandleSlot<Resource>) {
        // Release: our use of the resource happens-before its release by whoever
        // reclaims. Acquire: if we reclaim, everyone else's uses happen-before it.
        let after = slot.word.subtract(1, ordering: .acquiringAndReleasing).newValue
        if SlotWord.uses(after) == 0 && after & SlotWord.open == 0 {
            // Closed while we were using it, and we were the last user.
            reclaim(slot, word: after)
        }
    }

    private func setRemoved(_ slot: HandleSlot<Resource>, _ handle: Handle) -> Bool {
        var word = slot.word.load(ordering: .relaxed)
        while SlotWord.generation(word) == handle.generation,
              word & SlotWord.open != 0, word & SlotWord.removed == 0 {
            let (done, current) = slot.word.weakCompareExchange(
                expected: word, desired: word | SlotWord.removed, ordering: .relaxed)
            if done { return true }
            word = current
        }
        return false
    }

    /// Frees a closed slot with no uses left. Exactly one caller gets here per
    /// close: the closer if nobody was using it, else the last user.
    @usableFromInline
    func reclaim(_ slot: HandleSlot<Resource>, word: UInt64) {
        let resource = slot.resource.take()
        // A new generation makes every old handle stale for good (0 is never used).
        var next = SlotWord.generation(word) &+ 1
        if next == 0 { next = 1 }
        slot.word.store(SlotWord.make(generation: next), ordering: .releasing)
        putFreeSlot(slot)
        if let resource { onRelease(resource) }
    }

    private func takeFreeSlot() -> Int? {
        // Acquire: pairs with `putFreeSlot`'s release, so the slot's reset (new
        // generation, resource cleared) happens-before we reuse it.
        var top = freeTop.load(ordering: .acquiring)
        while true {
            let first = UInt32(truncatingIfNeeded: top)
            guard first != 0 else { return nil }
            // May be stale if the slot was taken and freed meanwhile; then the tag
            // has changed and the exchange below fails.
            let next = slots[Int(first - 1)].nextFree.load(ordering: .relaxed)
            let newTop = ((top >> 32) &+ 1) << 32 | UInt64(next)
            let (done, current) = freeTop.weakCompareExchange(
                expected: top, desired: newTop, ordering: .acquiring)
            if done {
                taken.add(1, ordering: .releasing)
                return Int(first - 1)
            }
            top = current
        }
    }

    private func putFreeSlot(_ slot: HandleSlot<Resource>) {
        taken.subtract(1, ordering: .relaxed)
        var top = freeTop.load(ordering: .relaxed)
        while true {
            slot.nextFree.store(UInt32(truncatingIfNeeded: top), ordering: .relaxed)
            let newTop = ((top >> 32) &+ 1) << 32 | UInt64(slot.index + 1)
            // Release: the slot's reset and its `nextFree` happen-before a taker's acquire.
            let (done, current) = freeTop.weakCompareExchange(
                expected: top, desired: newTop, ordering: .releasing)
            if done { return }
            top = current
        }
    }
}

/// One slot: a state word and the resource it guards.
@usableFromInline
final class HandleSlot<Resource: Sendable>: @unchecked Sendable {
    let index: Int
    /// `SlotWord` layout; generation starts at 1.
    @usableFromInline let word = Atomic<UInt64>(SlotWord.make(generation: 1))
    /// Written by the opener (slot off the free list) and the reclaimer (no uses
    /// left); read by users while they hold a use.
    @usableFromInline var resource: Resource?
    /// While free: the next free slot's index + 1 (0 = none).
    let nextFree: Atomic<UInt32>

    init(index: Int, nextFree: UInt32) {
        self.index = index
        self.nextFree = Atomic(nextFree)
    }
}

/// The slot state word: generation (bits 32...63), open (bit 31), removed
/// (bit 30), uses in progress (bits 0...29).
@usableFromInline
enum SlotWord {
    @inlinable static var open: UInt64 { 1 << 31 }
    @inlinable static var removed: UInt64 { 1 << 30 }
    @inlinable static var maxUses: UInt64 { (1 << 30) - 1 }
    @inlinable static func generation(_ w: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: w >> 32) }
    @inlinable static func uses(_ w: UInt64) -> UInt64 { w & maxUses }
    @inlinable static func make(generation: UInt32) -> UInt64 { UInt64(generation) << 32 }
}

/// First in, first out, for the queues between threads (``WorkQueue``, the
/// pipeline's): taking the first item moves an index; what was taken is
/// dropped from the front now and then, not at every take.
package struct FIFO<Item> {
    private var items: [Item] = []
    private var head = 0

    package init() {}

    package var isEmpty: Bool { head >= items.count }

    package mutating func append(_ item: Item) { items.append(item) }

    package mutating func popFirst() -> Item? {
        guard head < items.count else { return nil }
        let item = items[head]
        head += 1
        if head > 64, head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return item
    }

    /// Removes and returns every item, in order.
    package mutating func removeAll() -> [Item] {
        defer { items = []; head = 0 }
        return Array(items[head...])
    }
}

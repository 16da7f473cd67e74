/// A device's transfers that libusb owns now: added at each submission,
/// removed at each completion, all cancelled on removal or close, and the
/// device torn down once none is left. Each box keeps its own index
/// (`TransferBox.pendingIndex`), so adding and removing are O(1) without
/// hashing (a dictionary keyed by the box's identity was 12% of devif's own
/// time per transfer on the event thread, by `perf` in the lab VM).
/// Under the device's lock: the indexes belong to it.
struct PendingTransfers {
    private(set) var boxes: [TransferBox] = []

    var isEmpty: Bool { boxes.isEmpty }
    var count: Int { boxes.count }

    /// Adds `box`; it must not be pending (on this or any other device).
    mutating func insert(_ box: TransferBox) {
        precondition(box.pendingIndex < 0, "a transfer registered twice")
        box.pendingIndex = boxes.count
        boxes.append(box)
    }

    /// Removes `box` if it is here (the last one takes its place).
    mutating func remove(_ box: TransferBox) {
        let i = box.pendingIndex
        guard i >= 0, i < boxes.count, boxes[i] === box else { return }
        let last = boxes.removeLast()
        if i < boxes.count {
            boxes[i] = last
            last.pendingIndex = i
        }
        box.pendingIndex = -1
    }
}

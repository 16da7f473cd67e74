import Synchronization

/// One HID input report as the input report stream and ``HIDInputEvent``
/// carry it: the bytes as read from hidraw, starting with the report ID when
/// the device numbers its reports.
///
/// A report is an immutable view of a buffer that the device's reader
/// recycles once every holder has let go of it, so
/// a warm stream allocates nothing per report, and the buffers are as large
/// as the largest input report the device's report descriptor declares, not
/// a fixed worst case. Keep one as long as needed: a held report is never
/// overwritten.
public struct HIDReport: RandomAccessCollection, Sendable, Equatable, CustomStringConvertible {
    let storage: HIDReportStorage

    /// A report holding a copy of `bytes` (for tests and programs that make
    /// their own; the stream's reports come from the reader's pool).
    public init(_ bytes: some Collection<UInt8>) {
        storage = HIDReportStorage(capacity: bytes.count)
        // Straight from contiguous bytes (an array, a slice); others are gathered first.
        if bytes.withContiguousStorageIfAvailable({ storage.fill(UnsafeRawBufferPointer($0)) }) == nil {
            storage.fill(Array(bytes))
        }
    }

    init(storage: HIDReportStorage) { self.storage = storage }

    public var startIndex: Int { 0 }
    public var endIndex: Int { storage.count }

    /// The byte at `index` (`0..<count`).
    public subscript(index: Int) -> UInt8 {
        precondition(index >= 0 && index < storage.count, "HIDReport index \(index) out of range 0..<\(storage.count)")
        return storage.bytes.load(fromByteOffset: index, as: UInt8.self)
    }

    /// Calls `body` with the report's bytes (valid only during the call).
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: storage.bytes, count: storage.count))
    }

    /// The report as an array (allocates; for convenience off the hot path).
    public var array: [UInt8] { withUnsafeBytes { Array($0) } }

    public static func == (lhs: HIDReport, rhs: HIDReport) -> Bool {
        lhs.withUnsafeBytes { a in rhs.withUnsafeBytes { b in a.elementsEqual(b) } }
    }

    /// The bytes in hex, as `0a 1b 2c`.
    public var description: String {
        map { byte in byte < 0x10 ? "0" + String(byte, radix: 16) : String(byte, radix: 16) }.joined(separator: " ")
    }
}

/// The buffer behind ``HIDReport``s: written only while the pool holds the
/// sole reference (before it is published, or once every holder let go),
/// read-only while any report refers to it.
package final class HIDReportStorage: @unchecked Sendable {
    let bytes: UnsafeMutableRawPointer
    package let capacity: Int
    private(set) var count = 0

    package init(capacity: Int) {
        self.capacity = capacity
        bytes = .allocate(byteCount: max(capacity, 1), alignment: 16)
    }

    deinit { bytes.deallocate() }

    func fill(_ source: UnsafeRawBufferPointer) {
        precondition(source.count <= capacity)
        if let base = source.baseAddress { bytes.copyMemory(from: base, byteCount: source.count) }
        count = source.count
    }

    func fill(_ source: [UInt8]) { source.withUnsafeBytes { fill($0) } }
}

/// The input reader's recycled report buffers: one thread (the reader)
/// makes every report of a device through its pool.
///
/// Buffers are handed out round-robin, so the one to reuse next is the
/// oldest: with subscribers reading in order it is the first let go of. A
/// buffer still held (a subscriber behind, a report kept) is skipped by
/// making a new one, up to `limit` buffers; past that, and for a report
/// longer than the buffers (a device sending more than its descriptor
/// declared), a report gets a buffer of its own that is not kept. No report
/// is ever dropped or truncated here.
package struct HIDReportPool: ~Copyable {
    /// The size of each pooled buffer: the largest input report the device declares.
    package let reportCapacity: Int
    package let limit: Int
    private var buffers: [HIDReportStorage] = []
    /// Buffers looked at per report before making a new one.
    private static let candidates = 8
    private var next = 0
    /// Buffers made so far, pooled or not (what the tests and the lab check).
    package private(set) var made = 0

    package init(reportCapacity: Int, limit: Int) {
        self.reportCapacity = max(1, reportCapacity)
        self.limit = max(1, limit)
    }

    /// The largest input report `descriptor` declares, with its ID byte; nil
    /// when it declares none (then the caller picks a size).
    package static func largestInputReport(_ descriptor: HIDReportDescriptor) -> Int? {
        descriptor.reports.filter { $0.kind == .input }.map(\.byteLength).max()
    }

    /// A report holding a copy of `bytes`.
    package mutating func make(copying bytes: UnsafeRawBufferPointer) -> HIDReport {
        guard bytes.count <= reportCapacity else { return unpooled(bytes) }
        // The oldest first; a few more when it is held (a subscriber that
        // overflowed holds old reports while newer, dropped ones are free).
        for step in 0..<min(Self.candidates, buffers.count) {
            let i = (next + step) % buffers.count
            guard isKnownUniquelyReferenced(&buffers[i]) else { continue }
            // Every other holder has released it: their reads happened
            // before (the release is ordered; this fence pairs with it).
            atomicMemoryFence(ordering: .acquiring)
            if i != next { buffers.swapAt(i, next) }
            let storage = buffers[next]
            storage.fill(bytes)
            next = (next + 1) % buffers.count
            return HIDReport(storage: storage)
        }
        guard buffers.count < limit else { return unpooled(bytes) }
        let storage = HIDReportStorage(capacity: reportCapacity)
        made += 1
        storage.fill(bytes)
        buffers.insert(storage, at: min(next, buffers.count))
        next = (next + 1) % buffers.count
        return HIDReport(storage: storage)
    }

    private mutating func unpooled(_ bytes: UnsafeRawBufferPointer) -> HIDReport {
        let storage = HIDReportStorage(capacity: bytes.count)
        made += 1
        storage.fill(bytes)
        return HIDReport(storage: storage)
    }

    /// Buffers the pool keeps now.
    package var pooled: Int { buffers.count }
}

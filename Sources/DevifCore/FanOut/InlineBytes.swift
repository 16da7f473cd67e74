/// A byte payload of up to `capacity` bytes stored inline (no heap), for
/// publishing small fixed-size payloads through a ``FanOut`` without allocating: copying one
/// into a subscriber's queue is a plain memory copy.
///
/// Choose `capacity` from the largest report the device declares (for example
/// 64 for full-speed HID); each queued element costs `capacity` bytes.
@available(macOS 26.0, *)
public struct InlineBytes<let capacity: Int>: Sendable, BitwiseCopyable {
    /// How many bytes are in use.
    public private(set) var count: Int
    private var storage: InlineArray<capacity, UInt8>

    /// An empty payload.
    public init() {
        count = 0
        storage = InlineArray(repeating: 0)
    }

    /// Copies `bytes`; throws if there are more than `capacity` (never truncates
    /// silently: a report's length comes from the device and is untrusted).
    public init(copying bytes: UnsafeRawBufferPointer) throws(InlineBytesTooLong) {
        guard bytes.count <= capacity else {
            throw InlineBytesTooLong(count: bytes.count, capacity: capacity)
        }
        self.init()
        count = bytes.count
        var span = storage.mutableSpan
        span.withUnsafeMutableBytes { $0.copyMemory(from: bytes) }
    }

    /// Copies the bytes of `collection`; throws if there are more than `capacity`.
    public init(_ collection: some Collection<UInt8>) throws(InlineBytesTooLong) {
        let n = collection.count
        guard n <= capacity else { throw InlineBytesTooLong(count: n, capacity: capacity) }
        self.init()
        count = n
        for (i, byte) in collection.enumerated() { storage[i] = byte }
    }

    /// Calls `body` with the payload's bytes (valid only during the call).
    public func withUnsafeBytes<R, E: Error>(
        _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        let span = storage.span
        let n = count
        return try span.withUnsafeBytes { (all) throws(E) -> R in
            try body(UnsafeRawBufferPointer(rebasing: all[..<n]))
        }
    }

    /// The byte at `index` (`0..<count`).
    public subscript(index: Int) -> UInt8 {
        precondition(index >= 0 && index < count, "InlineBytes index \(index) out of range 0..<\(count)")
        return storage[index]
    }

    /// The payload as an array (allocates; for convenience off the hot path).
    public var array: [UInt8] { withUnsafeBytes { Array($0) } }
}

@available(macOS 26.0, *)
extension InlineBytes: Equatable {
    public static func == (a: Self, b: Self) -> Bool {
        a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.elementsEqual(y) } }
    }
}

@available(macOS 26.0, *)
extension InlineBytes: CustomStringConvertible {
    /// Hex bytes, e.g. `[01 ff 00]`.
    public var description: String {
        withUnsafeBytes { bytes in
            "[" + bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
                .joined(separator: " ") + "]"
        }
    }
}

/// A payload did not fit an ``InlineBytes`` buffer.
public struct InlineBytesTooLong: Error, Sendable, Equatable, CustomStringConvertible {
    /// The payload's length.
    public let count: Int
    /// The buffer's capacity.
    public let capacity: Int

    public var description: String {
        "payload of \(count) bytes does not fit an InlineBytes<\(capacity)> buffer; use a larger capacity (the device's largest report size)"
    }
}

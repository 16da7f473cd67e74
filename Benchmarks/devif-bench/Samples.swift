import Foundation

/// One measured value, printed as one JSON line on stdout:
/// `{"measure":"bulk-in","impl":"devif","value":53.1,"unit":"MB/s"}`.
/// The C baselines print the same shape, so report.py pairs devif with its
/// baseline by `measure` and tells the two apart by `impl`.
struct Sample: Encodable {
    var measure: String
    var impl: String
    var value: Double
    var unit: String
    /// Free-form context (transfer size, subscriber count, ...).
    var note: String? = nil

    func emit() {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self), let line = String(data: data, encoding: .utf8) else { return }
        // One write per line: lines from concurrent runs never interleave.
        let bytes = Array((line + "\n").utf8)
        bytes.withUnsafeBytes { _ = write(1, $0.baseAddress, $0.count) }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the C baselines use too, so
/// timestamps taken in different processes of one machine compare.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The p-th percentile (0...100) of `values`, nearest rank; nil when empty.
func percentile(_ values: [Double], _ p: Double) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

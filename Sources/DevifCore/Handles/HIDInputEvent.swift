/// A HID input report as the input report stream carries it (inline, so
/// publishing one allocates nothing): starting with the report ID when the
/// device numbers its reports.
public typealias HIDReport = InlineBytes<4096>

/// What a HID handle's input report stream delivers.
public enum HIDInputEvent: Sendable {
    /// One input report.
    case report(HIDReport)
    /// A report longer than a ``HIDReport`` holds (4096 bytes) arrived; it
    /// is not in the stream (a blocking `read(timeout:)` returns it whole).
    case tooLong(count: Int)
    /// The last event: why the stream ended (``HandleError/deviceRemoved``,
    /// ``HandleError/closed``, or the read that failed).
    case ended(HandleError)
}

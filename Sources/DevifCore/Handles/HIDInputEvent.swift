/// What a HID handle's input report stream delivers.
public enum HIDInputEvent: Sendable {
    /// One input report, whole (see ``HIDReport``).
    case report(HIDReport)
    /// The last event: why the stream ended (``HandleError/deviceRemoved``,
    /// ``HandleError/closed``, or the read that failed).
    case ended(HandleError)
}

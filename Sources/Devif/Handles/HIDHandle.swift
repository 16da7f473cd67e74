import DevifCore
import DevifHID

/// An open HID instance: output, input and feature reports, the report
/// descriptor, and an input report stream that any number of readers
/// receive in full. Get one with ``DeviceManager/openHID(_:)-(String)``.
///
/// As for ``USBHandle``: a stale copy fails with ``/DevifCore/HandleError/closed``;
/// removal ends a blocked read with ``/DevifCore/HandleError/deviceRemoved`` and
/// ``removalNotices()`` says `.pending` then `.complete`. ``close()`` ends a
/// blocked ``read(timeout:)`` at once.
public struct HIDHandle: Sendable, CustomStringConvertible {
    /// The symbolic link this handle was opened with.
    public var symbolicLink: SymbolicLink { ref.instance.symbolicLink }
    /// The handle's slot and generation in the manager's table.
    public var handle: Handle { ref.handle }

    let ref: HandleRef
    let device: HIDDevice

    public var description: String { "HID handle \(handle) to \(symbolicLink)" }

    /// What ``inputReports(capacity:)`` delivers: a report, one too long for
    /// the buffer, or the end of the stream.
    public typealias InputEvent = HIDInputEvent

    /// Closes the handle: a blocked ``read(timeout:)`` ends at once with
    /// ``/DevifCore/HandleError/closed``, and the input report streams end. Returns false
    /// if it was closed already. Safe from any thread or task, twice.
    @discardableResult
    public func close() -> Bool { ref.close() }

    /// `.pending` then `.complete` when the device goes away (see ``RemovalNotice``);
    /// the stream ends after `.complete` or when the handle is closed.
    public func removalNotices() -> AsyncStream<RemovalNotice> { ref.instance.tracker.notices() }

    /// Sends an output report; the first byte is the report ID (0 when the
    /// device does not number its reports).
    public func write(outputReport report: [UInt8]) throws(HandleError) {
        try ref.perform { () throws(HIDError) in try device.write(outputReport: report) }
    }

    /// The next input report (with its ID byte when numbered), waiting at
    /// most `timeout` (nil: no limit).
    public func read(timeout: Duration?) throws(HandleError) -> [UInt8] {
        try ref.perform { () throws(HIDError) in try device.read(timeout: timeout) }
    }

    /// Every input report from now on, for this subscriber (see
    /// `HIDDevice.inputReports(capacity:)` in DevifHID): overflow is reported, never silent.
    public func inputReports(capacity: Int = 256) -> FanOut<InputEvent>.Subscription {
        device.inputReports(capacity: capacity)
    }

    /// The size of the input report stream's buffers: the largest input
    /// report the report descriptor declares (nil until the first
    /// ``inputReports(capacity:)`` starts the reader).
    @_spi(LabHooks) public var inputReportBufferSize: Int? { device.inputReportCapacity }

    /// Reads feature report `id`. `length` is the buffer size including the
    /// report ID byte; the result starts with the ID and has as many bytes as
    /// the device returned.
    public func getFeatureReport(id: UInt8, length: Int) throws(HandleError) -> [UInt8] {
        try ref.perform { () throws(HIDError) in try device.getFeatureReport(id: id, length: length) }
    }

    /// Sends a feature report; the first byte is the report ID (0 when the
    /// device does not number its reports). Returns the bytes the kernel accepted.
    @discardableResult
    public func sendFeatureReport(_ report: [UInt8]) throws(HandleError) -> Int {
        try ref.perform { () throws(HIDError) in try device.sendFeatureReport(report) }
    }

    /// Reads input report `id` on request (a GET_REPORT, not the interrupt
    /// stream); some drivers refuse it (``/DevifCore/HandleError/unsupported``).
    public func getInputReport(id: UInt8, length: Int) throws(HandleError) -> [UInt8] {
        try ref.perform { () throws(HIDError) in try device.getInputReport(id: id, length: length) }
    }

    /// The device's report descriptor, as raw bytes.
    public func reportDescriptor() throws(HandleError) -> [UInt8] {
        try ref.perform { () throws(HIDError) in try device.reportDescriptor() }
    }
}

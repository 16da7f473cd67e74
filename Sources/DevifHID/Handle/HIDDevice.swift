import DevifCore
import DevifLinux
import Glibc
import Synchronization

/// An open hidraw node: output, feature and input reports, an input report
/// stream for any number of readers, and prompt failure on removal or close.
///
/// Until the first ``inputReports(capacity:)`` subscription, no thread runs:
/// ``read(timeout:)`` polls and reads the node on the caller's thread (as
/// hidapi does), and unread reports wait in the kernel's hidraw buffer, which
/// keeps at most 64 per open file and drops newer ones without notice.
///
/// The first subscription (either overload) starts one reader thread, which
/// from then on polls the node (and an eventfd that ``close()`` signals) and
/// hands every input report to two consumers, so neither steals from the
/// other:
/// - the stream, a ``FanOut`` that every ``inputReports(capacity:)``
///   subscriber receives in full (overflow is reported, never silent); the
///   first subscriber also gets the reports the kernel still held;
/// - the queue behind ``read(timeout:)``: the last ``readQueueLimit`` reports
///   since the thread started; older ones are dropped and counted in
///   ``droppedReadReports``.
///
/// Below the thread too, the kernel keeps at most 64 unread reports and drops
/// newer ones when the thread falls behind (seen in the lab: a no-delay burst
/// of 300 uhid reports, 104 arrived).
///
/// Removal (ENODEV/EIO on read, POLLHUP/POLLERR; a write or request that
/// fails with an I/O error as the device leaves, such as a write pending at
/// an unplug, which ends with EPROTO) makes pending and later calls
/// fail with ``HIDError/deviceRemoved`` and ends the stream with
/// ``InputEvent/ended(_:)``. ``close()`` is idempotent, callable from any
/// thread, and aborts a blocked ``read(timeout:)`` at once with
/// ``HIDError/closed`` (unlike hidapi's `hid_close`). Closing also happens
/// when the object is released.
package final class HIDDevice: Sendable {
    /// The stream's report buffer size when the report descriptor declares
    /// no input report (or cannot be read): a full-speed interrupt packet.
    package static let fallbackReportCapacity = 64
    /// Report buffers the reader keeps for reuse (see ``HIDReportPool``):
    /// enough for every subscriber queue of the default capacity to be full
    /// several times over; past it, a report gets a buffer of its own.
    package static let reportPoolLimit = 1024
    /// A streamed input report (see ``HIDReport``).
    package typealias Report = HIDReport
    /// What the input report stream delivers (see ``HIDInputEvent``).
    package typealias InputEvent = HIDInputEvent

    /// How many unread reports ``read(timeout:)`` keeps.
    package static let readQueueLimit = 64

    /// The hidraw node this handle was opened on.
    package var path: String { core.path }

    private let core: HIDDeviceCore

    /// Opens a hidraw node (`/dev/hidrawN`) read-write, non-blocking,
    /// close-on-exec. No thread starts until the first subscription.
    package init(path: String, link: String = "") throws(HIDError) {
        let fd: Int32
        do {
            fd = try Syscalls.open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        } catch {
            throw HIDError.opening(error)
        }
        let core: HIDDeviceCore
        do {
            core = try HIDDeviceCore(fd: fd, path: path, link: link)
        } catch {
            Syscalls.close(fd)
            throw HIDError.io(error)
        }
        self.core = core
    }

    deinit { core.close() }

    /// Closes the handle: a blocked ``read(timeout:)`` fails with
    /// ``HIDError/closed`` at once, the stream ends with `.ended(.closed)`, and
    /// the reader thread, if any, is joined. Safe twice and from any thread; the
    /// descriptor itself is closed when the last call using it returns.
    package func close() { core.close() }

    /// Why the handle stopped working (removed or closed), nil while usable.
    package var endReason: HIDError? { core.endReason }

    /// Marks the device removed (the manager saw it leave): a blocked
    /// ``read(timeout:)`` and every later call fail with
    /// ``HIDError/deviceRemoved``, and the stream ends. Idempotent.
    package func markRemoved() { core.markRemoved(HIDError.removed("\(path) (the device left)")) }

    /// Reports dropped from the ``read(timeout:)`` queue because it held
    /// ``readQueueLimit`` unread ones (0 until a subscription starts the
    /// reader thread; before, the kernel drops past its 64 uncounted).
    package var droppedReadReports: UInt64 { core.droppedReadReports }

    // MARK: Input

    /// The next input report (with its report ID byte when the device numbers
    /// its reports), waiting at most `timeout` (nil: no limit).
    /// - Throws: ``HIDError/timeout``, ``HIDError/closed`` (also when closed
    ///   while waiting), ``HIDError/deviceRemoved``.
    package func read(timeout: Duration?) throws(HIDError) -> [UInt8] {
        try core.read(timeout: timeout)
    }

    /// Subscribes to every input report from now on, until the device is
    /// removed or closed (the last event is ``InputEvent/ended(_:)``). Each
    /// subscriber has its own queue of `capacity` reports; when it falls
    /// behind it receives `.overflow(missed:)` where reports were dropped.
    /// After the end, a new subscription is empty and finished: check
    /// ``endReason``. The first subscription starts the reader thread (see
    /// the type's notes), which runs until close or removal.
    package func inputReports(capacity: Int = 256) -> FanOut<InputEvent>.Subscription {
        let subscription = core.fanOut.subscribe(capacity: capacity)
        core.startReader(sizing: Self.inputReportCapacity)
        return subscription
    }

    /// Like ``inputReports(capacity:)`` with a callback on a thread owned by
    /// the subscription (see ``FanOut/subscribe(capacity:name:onStart:onEnd:handler:)``).
    package func inputReports(capacity: Int = 256, name: String = "hid-input",
                             onEnd: (@Sendable () -> Void)? = nil,
                             handler: @escaping @Sendable (FanOut<InputEvent>.Delivery) -> Void)
        -> FanOut<InputEvent>.CallbackSubscription {
        let subscription = core.fanOut.subscribe(capacity: capacity, name: name, onEnd: onEnd, handler: handler)
        core.startReader(sizing: Self.inputReportCapacity)
        return subscription
    }

    // MARK: Output and feature reports

    /// Sends an output report. The first byte is the report ID, 0 when the
    /// device does not number its reports (as hidapi; the kernel strips it).
    package func write(outputReport report: [UInt8]) throws(HIDError) {
        try Self.checkLength(report.count, "output report")
        let written = try core.usingDescriptor("write") { fd throws(HIDError) in
            let path = core.path
            let result: Result<Int, LinuxError> = report.withUnsafeBytes { bytes in
                do throws(LinuxError) { return .success(try Syscalls.write(fd, bytes, subject: path)) } catch { return .failure(error) }
            }
            do throws(LinuxError) { return try result.get() } catch { throw HIDError.operating(error) }
        }
        if written != report.count {
            throw HIDError.io(LinuxError(code: EIO, call: "write (short: \(written) of \(report.count) bytes)",
                                         subject: core.path))
        }
    }

    /// Reads feature report `id` (HIDIOCGFEATURE). `length` is the buffer
    /// size including the report ID byte; the result starts with the ID and
    /// has as many bytes as the device returned.
    package func getFeatureReport(id: UInt8, length: Int) throws(HIDError) -> [UInt8] {
        try reportIoctl(id: id, length: length, request: HIDRawIoctl.getFeature(length), name: "HIDIOCGFEATURE")
    }

    /// Sends a feature report (HIDIOCSFEATURE); the first byte is the report
    /// ID (0 when unnumbered). Returns the byte count the kernel accepted.
    @discardableResult
    package func sendFeatureReport(_ report: [UInt8]) throws(HIDError) -> Int {
        try Self.checkLength(report.count, "feature report")
        var buffer = report
        return try core.usingDescriptor("HIDIOCSFEATURE") { fd throws(HIDError) in
            try Self.ioctl(fd, HIDRawIoctl.setFeature(buffer.count), &buffer, "HIDIOCSFEATURE", core.path)
        }
    }

    /// Reads input report `id` on request (HIDIOCGINPUT: a GET_REPORT, not the
    /// interrupt stream). Some drivers refuse it: then ``HIDError/unsupported``.
    package func getInputReport(id: UInt8, length: Int) throws(HIDError) -> [UInt8] {
        try reportIoctl(id: id, length: length, request: HIDRawIoctl.getInput(length), name: "HIDIOCGINPUT")
    }

    /// The device's report descriptor (HIDIOCGRDESCSIZE + HIDIOCGRDESC).
    package func reportDescriptor() throws(HIDError) -> [UInt8] {
        let path = core.path
        return try core.usingDescriptor("HIDIOCGRDESC") { fd throws(HIDError) in try Self.reportDescriptor(fd, path) }
    }

    /// The size of the input stream's report buffers (and what the lab checks
    /// against the descriptor): nil until the first subscription starts the reader.
    package var inputReportCapacity: Int? { core.reportCapacity }

    private static func reportDescriptor(_ fd: Int32, _ path: String) throws(HIDError) -> [UInt8] {
        var size: Int32 = 0
        _ = try ioctl(fd, HIDRawIoctl.getDescriptorSize, &size, "HIDIOCGRDESCSIZE", path)
        // Untrusted: the kernel caps it, but do not rely on that.
        let length = Int(max(0, min(size, Int32(HIDRawIoctl.maximumDescriptorLength))))
        var raw = [UInt8](repeating: 0, count: 4 + HIDRawIoctl.maximumDescriptorLength)
        withUnsafeBytes(of: UInt32(length)) { sizeBytes in
            raw.withUnsafeMutableBytes { target in target.copyBytes(from: sizeBytes) }
        }
        _ = try ioctl(fd, HIDRawIoctl.getDescriptor, &raw, "HIDIOCGRDESC", path)
        return Array(raw[4..<(4 + length)])
    }

    /// The largest input report the device's descriptor declares (with its
    /// ID byte), else ``fallbackReportCapacity``.
    static func inputReportCapacity(_ fd: Int32, _ path: String) -> Int {
        guard let bytes = try? reportDescriptor(fd, path),
              let largest = HIDReportPool.largestInputReport(HIDReportDescriptor.parse(bytes)) else {
            return fallbackReportCapacity
        }
        return min(max(largest, 1), HIDRawIoctl.maximumReportLength)
    }

    // MARK: Helpers

    private func reportIoctl(id: UInt8, length: Int, request: UInt, name: String) throws(HIDError) -> [UInt8] {
        try Self.checkLength(length, name)
        var buffer = [UInt8](repeating: 0, count: length)
        buffer[0] = id
        let count = try core.usingDescriptor(name) { fd throws(HIDError) in
            try Self.ioctl(fd, request, &buffer, name, core.path)
        }
        return Array(buffer.prefix(min(max(count, 0), length)))
    }

    private static func ioctl<T>(_ fd: Int32, _ request: UInt, _ value: inout T, _ name: String, _ path: String) throws(HIDError) -> Int {
        do {
            return try withUnsafeMutableBytes(of: &value) { raw throws(LinuxError) in
                try HIDRawIoctl.call(fd, request, raw.baseAddress!, name: name, path: path)
            }
        } catch {
            throw HIDError.operating(error)
        }
    }

    private static func ioctl(_ fd: Int32, _ request: UInt, _ buffer: inout [UInt8], _ name: String, _ path: String) throws(HIDError) -> Int {
        let result: Result<Int, LinuxError> = buffer.withUnsafeMutableBytes { raw in
            do throws(LinuxError) { return .success(try HIDRawIoctl.call(fd, request, raw.baseAddress!, name: name, path: path)) }
            catch { return .failure(error) }
        }
        do throws(LinuxError) { return try result.get() } catch { throw HIDError.operating(error) }
    }

    /// A report buffer holds the ID byte and at most HID_MAX_BUFFER_SIZE bytes.
    private static func checkLength(_ count: Int, _ what: String) throws(HIDError) {
        if count < 1 { throw HIDError.invalid("\(what): needs at least the report ID byte") }
        if count > HIDRawIoctl.maximumReportLength {
            throw HIDError.tooLong("\(what) of \(count) bytes exceeds the kernel's \(HIDRawIoctl.maximumReportLength)")
        }
    }
}

/// The state shared by a ``HIDDevice`` and its reader thread (kept apart so
/// the thread does not keep the package object alive: releasing it closes).
///
/// Two ways to read, never both at once on the descriptor:
/// - **Direct** (no subscription yet, no thread): `read` polls the hidraw
///   descriptor, `ended` and `modeChanged` on the caller's thread and reads
///   one report itself. Callers inside that poll+read section are counted
///   (`directReaders`, under the state lock, together with `users`).
/// - **Threaded** (from the first `inputReports` subscription on): the
///   reader thread reads, publishes to the fan-out and fills the queue;
///   `read` takes from the queue, woken by `readable`.
///
/// The switch (`startReader`), and why no report is read twice or lost:
/// 1. Under the lock, `threadStarted` is set (only while open); a `read`
///    that enters afterwards sees it and goes to the queue, one that entered
///    before was counted in `directReaders`. Then `modeChanged` is signalled
///    (never drained: the switch happens once), so a counted reader blocked
///    in poll wakes, or finds it set when it polls late, and leaves without
///    reading; one already past poll finishes its single read(2) and returns
///    that report to its caller (a report the kernel held before the switch).
/// 2. A reader leaving the section decrements the count under the lock; the
///    one that brings it to 0 with `threadStarted` set signals `directIdle`
///    (never drained; the count cannot rise again). The thread checks the
///    count under the lock and polls `directIdle` (and `ended`) until it is 0,
///    only then touches the descriptor. Each read(2) hands a report to exactly
///    one reader, so every report is returned by one direct read or read by
///    the thread (which queues it and publishes it). Reports left in the
///    kernel's buffer at the switch go to the queue and to the subscribers.
/// 3. Close or removal vs the switch: `threadStarted` and the phase change
///    under the same lock, so exactly one side ends the stream: the thread
///    when it was started, else whoever moved the phase from open (close,
///    markRemoved, or a direct read that saw the removal). `startReader` does
///    nothing once the phase left open. The `thread` slot is held while the
///    thread is created, so close either joins it or started before it.
final class HIDDeviceCore: Sendable {
    enum Phase: Sendable { case open, removed(HIDError), closed }

    struct State: Sendable {
        var phase = Phase.open
        /// Calls using the descriptor, the reader thread and direct readers
        /// included; the descriptor is closed when this falls to 0 after
        /// close (so a concurrent write never hits a reused descriptor number).
        var users = 0
        var descriptorClosed = false
        /// Set once, by the first subscription: the reader thread owns the
        /// descriptor's input from then on.
        var threadStarted = false
        /// `read` calls inside the direct poll+read section.
        var directReaders = 0
        /// Reports for `read`, sharing the subscribers' buffers.
        var queue: [HIDReport] = []
        /// The stream's report buffer size, set when the reader starts.
        var reportCapacity: Int?
        var queueHead = 0
        var dropped: UInt64 = 0
    }

    let fd: Int32
    let path: String
    /// The instance's symbolic link, named in the stream's last event.
    let link: String
    let fanOut = FanOut<HIDDevice.InputEvent>()
    /// Signalled (and never drained) on close and on removal: wakes the
    /// reader thread and every waiting `read`.
    private let ended: EventFD
    /// Signalled while the read queue is not empty (threaded mode).
    private let readable: EventFD
    /// Signalled (never drained) when the reader thread is started: direct
    /// readers leave the descriptor.
    private let modeChanged: EventFD
    /// Signalled (never drained) when the last direct reader left after the
    /// switch: the reader thread may read the descriptor.
    private let directIdle: EventFD
    private let state = Mutex(State())
    private let thread = Mutex<JoinableThread?>(nil)

    init(fd: Int32, path: String, link: String) throws(LinuxError) {
        self.link = link
        self.fd = fd
        self.path = path
        ended = try EventFD()
        readable = try EventFD()
        modeChanged = try EventFD()
        directIdle = try EventFD()
    }

    /// Starts the reader thread unless it runs or the handle is closed or
    /// removed. Called by every subscription (after subscribing, so the new
    /// subscriber gets every report the thread reads).
    /// `sizing` gives the report buffer size from the descriptor (called
    /// once, when the reader starts, with the descriptor in use).
    func startReader(sizing: (Int32, String) -> Int) {
        thread.withLock { slot in
            let start = state.withLock { state -> Bool in
                guard case .open = state.phase, !state.threadStarted else { return false }
                state.threadStarted = true
                state.users += 1  // the reader thread
                return true
            }
            guard start else { return }
            let capacity = sizing(fd, path)
            state.withLock { $0.reportCapacity = capacity }
            modeChanged.signal()
            do throws(LinuxError) {
                slot = try JoinableThread(name: "devif-hid-read") { [self] in runReader(reportCapacity: capacity) }
            } catch {
                // Out of threads: the stream cannot run; end the handle.
                let end = HIDError.io(error)
                state.withLock { state in
                    if case .open = state.phase { state.phase = .removed(end) }
                }
                ended.signal()
                endStream(end)
                endUse()
            }
        }
    }

    var endReason: HIDError? {
        state.withLock { state in
            switch state.phase {
            case .open: return nil
            case .removed(let error): return error
            case .closed: return HIDError.closed
            }
        }
    }

    var droppedReadReports: UInt64 { state.withLock { $0.dropped } }

    var reportCapacity: Int? { state.withLock { $0.reportCapacity } }

    func close() {
        let (first, endsStream) = state.withLock { state -> (Bool, Bool) in
            let wasOpen: Bool
            switch state.phase {
            case .closed: return (false, false)
            case .open: wasOpen = true
            case .removed: wasOpen = false  // the removal ended the stream
            }
            state.phase = .closed
            // Without a reader thread, the stream ends here.
            return (true, wasOpen && !state.threadStarted)
        }
        guard first else { return }
        ended.signal()
        if endsStream { endStream(HIDError.closed) }
        thread.withLock { $0 }?.join()
        endUse(count: 0)  // closes the descriptor now if nobody uses it
    }

    /// Runs `body` with the descriptor, failing if the handle is closed or
    /// the device removed.
    func usingDescriptor<R>(_ what: String, _ body: (Int32) throws(HIDError) -> R) throws(HIDError) -> R {
        let refusal = state.withLock { state -> HIDError? in
            switch state.phase {
            case .open: state.users += 1; return nil
            case .removed(let error): return refusalAfterRemoval(error, what)
            case .closed: return HIDError.closed(what)
            }
        }
        if let refusal { throw refusal }
        defer { endUse() }
        do {
            return try body(fd)
        } catch where error == .deviceRemoved {
            markRemoved(error)
            throw error
        } catch where error == .io && leftDuringCall() {
            // A call in flight as the device leaves fails with its transfer's
            // error a few milliseconds before hidraw hangs up (seen in the
            // lab: a write pending at an unplug ended with EPROTO); the
            // hang-up tells the two apart, as it does for USB transfers.
            let removed = HIDError.removed("\(what)(\(path)), failing as the device left", errno: error.errno)
            markRemoved(removed)
            throw removed
        }
    }

    /// After an I/O error of a call: whether the device is gone (removal
    /// known already, or hidraw hangs up within 250 ms; a device that stays
    /// costs that much more on an error that already means trouble). `ended`
    /// wakes the wait when the manager marks the removal, or on close.
    private func leftDuringCall() -> Bool {
        nodeHungUp(fd, wake: ended.fileDescriptor) {
            switch state.withLock({ $0.phase }) {
            case .removed: true
            case .closed: false
            case .open: nil
            }
        }
    }

    /// Names the refused call; keeps the kind (an unexpected read error ends
    /// the handle too).
    private func refusalAfterRemoval(_ error: HIDError, _ what: String) -> HIDError {
        error == .deviceRemoved ? HIDError.removed("\(what)(\(path))", errno: error.errno) : error
    }

    private func endUse(count: Int = 1) {
        let closeNow = state.withLock { state -> Bool in
            state.users -= count
            guard case .closed = state.phase, state.users == 0, !state.descriptorClosed else { return false }
            state.descriptorClosed = true
            return true
        }
        if closeNow { Syscalls.close(fd) }
    }

    func markRemoved(_ error: HIDError) {
        let endsStream = state.withLock { state -> Bool in
            guard case .open = state.phase else { return false }
            state.phase = .removed(error)
            return !state.threadStarted
        }
        ended.signal()
        if endsStream { endStream(error) }
    }

    /// The stream's last event, when no reader thread publishes it: called
    /// once, by whoever moved the phase from open (the only publisher then).
    private func endStream(_ end: HIDError) {
        fanOut.publish(.ended(HandleError(end, link: link)))
        fanOut.finish()
    }

    // MARK: read

    func read(timeout: Duration?) throws(HIDError) -> [UInt8] {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            enum Step { case done(Result<[UInt8], HIDError>), direct, wait }
            let step = state.withLock { state -> Step in
                switch state.phase {
                case .closed: return .done(.failure(HIDError.closed("read")))
                case .removed(let error): return .done(.failure(refusalAfterRemoval(error, "read")))
                case .open: break
                }
                if !state.threadStarted {
                    state.directReaders += 1
                    state.users += 1
                    return .direct
                }
                if state.queueHead < state.queue.count {
                    let report = state.queue[state.queueHead]
                    state.queueHead += 1
                    if state.queueHead == state.queue.count {
                        state.queue.removeAll(keepingCapacity: true)
                        state.queueHead = 0
                        readable.drain()
                    }
                    return .done(.success(report.array))
                }
                readable.drain()
                return .wait
            }
            switch step {
            case .done(let outcome): return try outcome.get()
            case .direct:
                let outcome: DirectOutcome
                do {
                    outcome = try readDirectly(deadline: deadline)
                } catch {
                    leaveDirect()
                    throw error
                }
                leaveDirect()
                switch outcome {
                case .report(let report): return report
                case .timedOut: throw HIDError.timedOut("read")
                case .again: continue
                }
            case .wait:
                let waitMilliseconds = Self.milliseconds(until: deadline)
                if waitMilliseconds == 0 { throw HIDError.timedOut("read") }
                var fds = [pollfd(fd: readable.fileDescriptor, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: ended.fileDescriptor, events: Int16(POLLIN), revents: 0)]
                do {
                    _ = try Syscalls.poll(&fds, timeoutMilliseconds: waitMilliseconds)
                } catch {
                    throw HIDError.io(error)
                }
            }
        }
    }

    /// The poll timeout left before `deadline` (-1: none, 0: past), rounded
    /// up so a short remainder does not spin at 0 ms.
    private static func milliseconds(until deadline: ContinuousClock.Instant?) -> Int32 {
        guard let deadline else { return -1 }
        let left = deadline - ContinuousClock.now
        if left <= .zero { return 0 }
        return Int32(clamping: left.millisecondsRoundedUp)
    }

    private enum DirectOutcome { case report([UInt8]), again, timedOut }

    /// One poll (and at most one read(2)) on the descriptor, on the caller's
    /// thread: a report, `.timedOut` (past the deadline, nothing to read), or
    /// `.again` (closed, removed, the reader thread started, or another direct
    /// reader took the report: the caller's next round says which).
    /// Only between `read`'s counting in and `leaveDirect()`.
    private func readDirectly(deadline: ContinuousClock.Instant?) throws(HIDError) -> DirectOutcome {
        // Polls once even past the deadline: a zero timeout still returns
        // a report the kernel holds.
        let waitMilliseconds = Self.milliseconds(until: deadline)
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: ended.fileDescriptor, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: modeChanged.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        do {
            _ = try Syscalls.poll(&fds, timeoutMilliseconds: waitMilliseconds)
        } catch {
            throw HIDError.io(error)
        }
        // Closed, removed or switched: the caller's next round says which.
        if fds[1].revents != 0 || fds[2].revents != 0 { return .again }
        let revents = Int32(fds[0].revents)
        if revents & Int32(POLLIN) != 0 {
            // hidraw keeps reports readable after removal until its buffer
            // is empty: read before looking at POLLHUP.
            let path = self.path
            let result = withUnsafeTemporaryAllocation(byteCount: HIDRawIoctl.maximumReportLength,
                                                      alignment: 16) { buffer -> Result<DirectOutcome, LinuxError> in
                do throws(LinuxError) {
                    let count = try Syscalls.read(fd, into: buffer, subject: path)
                    return .success(.report(Array(UnsafeRawBufferPointer(rebasing: buffer[..<count]))))
                } catch {
                    return error.code == EAGAIN ? .success(.again) : .failure(error)  // EAGAIN: another reader took it
                }
            }
            switch result {
            case .success(let outcome): return outcome
            case .failure(let error):
                let end = error.code == ENODEV || error.code == EIO
                    ? HIDError.removed("read(\(path))", errno: error.code) : HIDError.io(error)
                markRemoved(end)
                throw end
            }
        }
        if revents & Int32(POLLHUP | POLLERR | POLLNVAL) != 0 {
            let end = HIDError.removed("poll(\(path))")
            markRemoved(end)
            throw end
        }
        if revents == 0, let deadline, ContinuousClock.now >= deadline { return .timedOut }
        return .again
    }

    /// Leaves the direct section: the last one out after the switch lets the
    /// reader thread at the descriptor.
    private func leaveDirect() {
        let (idle, closeNow) = state.withLock { state -> (Bool, Bool) in
            state.directReaders -= 1
            state.users -= 1
            var closeNow = false
            if case .closed = state.phase, state.users == 0, !state.descriptorClosed {
                state.descriptorClosed = true
                closeNow = true
            }
            return (state.threadStarted && state.directReaders == 0, closeNow)
        }
        if idle { directIdle.signal() }
        if closeNow { Syscalls.close(fd) }
    }

    // MARK: reader thread

    private func runReader(reportCapacity: Int) {
        let end = readReports(reportCapacity: reportCapacity)
        if end == .deviceRemoved || end == .io {
            markRemoved(end)
        }
        endStream(end)
        endUse()
    }

    /// Waits until no direct reader is left, then reads until the end.
    private func readReports(reportCapacity: Int) -> HIDError {
        while state.withLock({ $0.directReaders > 0 }) {
            var fds = [pollfd(fd: directIdle.fileDescriptor, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: ended.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            do {
                _ = try Syscalls.poll(&fds, timeoutMilliseconds: -1)
            } catch {
                return HIDError.io(error)
            }
            if fds[1].revents != 0 { return endReason ?? HIDError.closed }
        }
        // Read into a buffer of the kernel's maximum, so a report longer than
        // the descriptor declares still arrives whole; the pool's buffers
        // are the descriptor's size.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: HIDRawIoctl.maximumReportLength,
                                                          alignment: 16)
        defer { buffer.deallocate() }
        var pool = HIDReportPool(reportCapacity: reportCapacity, limit: HIDDevice.reportPoolLimit)
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: ended.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            do {
                _ = try Syscalls.poll(&fds, timeoutMilliseconds: -1)
            } catch {
                return HIDError.io(error)
            }
            if fds[1].revents != 0 {
                return endReason ?? HIDError.closed
            }
            let revents = Int32(fds[0].revents)
            if revents & Int32(POLLIN) != 0 {
                // Drain what is queued first: hidraw keeps reports readable
                // after removal until its buffer is empty.
                while true {
                    let count: Int
                    do {
                        count = try Syscalls.read(fd, into: buffer, subject: path)
                    } catch {
                        if error.code == EAGAIN { break }
                        if error.code == ENODEV || error.code == EIO {
                            return HIDError.removed("read(\(path))", errno: error.code)
                        }
                        return HIDError.io(error)
                    }
                    deliver(pool.make(copying: UnsafeRawBufferPointer(rebasing: buffer[..<count])))
                }
            }
            if revents & Int32(POLLHUP | POLLERR | POLLNVAL) != 0 {
                return HIDError.removed("poll(\(path))")
            }
        }
    }

    private func deliver(_ report: HIDReport) {
        fanOut.publish(.report(report))
        state.withLock { state in
            if state.queue.count - state.queueHead >= HIDDevice.readQueueLimit {
                state.queueHead += 1
                state.dropped += 1
            }
            if state.queueHead > HIDDevice.readQueueLimit {
                state.queue.removeFirst(state.queueHead)
                state.queueHead = 0
            }
            state.queue.append(report)
            readable.signal()
        }
    }
}

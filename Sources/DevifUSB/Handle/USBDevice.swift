import CLibUSB
import DevifCore
import DevifLinux
import Dispatch
import Glibc
import Synchronization

/// An open USB device (its usbfs node): claim interfaces, bulk, interrupt and
/// control transfers, synchronous or async, streams with several transfers
/// in flight, and prompt failure on removal or close.
///
/// The node is opened by path and handed to libusb (`libusb_wrap_sys_device`),
/// so it works whether or not libusb itself discovers devices; transfers
/// complete on the shared context's event thread (``USBContext/shared()``).
///
/// - Every transfer is tracked. ``close()`` cancels those in flight, waits
///   for libusb to give them back, releases the claimed interfaces (libusb
///   re-attaches the kernel drivers it detached), then closes the node. It is
///   idempotent and safe from any thread; from a completion handler it does
///   not wait (the last completion finishes the job).
/// - Removal (a transfer ends with NO_DEVICE, or ``markRemoved()`` from the
///   manager, which saw the device leave) cancels everything in flight; those
///   transfers and every later call fail with ``USBError/deviceRemoved``.
/// - Task cancellation cancels the transfer the task awaits; it then throws
///   ``USBError/cancelled``.
package final class USBDevice: Sendable {
    /// The usbfs node, e.g. `/dev/bus/usb/001/004`.
    package let path: String
    /// Endpoints of the active configuration, by address.
    package var endpoints: [Endpoint] { core.endpoints.withLock { Array($0.values) }.sorted { $0.address < $1.address } }

    let core: USBDeviceCore

    /// One endpoint of the active configuration.
    package struct Endpoint: Sendable, Hashable {
        package typealias Kind = USBEndpoint.TransferType
        /// `bEndpointAddress`: bit 7 set for IN.
        package let address: UInt8
        package let kind: Kind
        /// `wMaxPacketSize` (bits 0-10: bytes per packet).
        package let maxPacketSize: Int
        /// The interface (number) the endpoint belongs to.
        package let interface: Int
        package var isIn: Bool { address & 0x80 != 0 }
    }

    /// Opens a usbfs node read-write.
    /// - Throws: ``USBError/access`` without permission (a udev rule fixes
    ///   that), ``USBError/deviceRemoved`` if the node is gone.
    package convenience init(path: String, context: USBContext? = nil) throws(USBError) {
        let context = if let context { context } else { try USBContext.shared() }
        self.init(path: path, transport: try LibUSBTransport(path: path, context: context))
    }

    /// A device on any transport (unit tests drive a fake one).
    package init(path: String, transport: any USBTransport) {
        self.path = path
        core = USBDeviceCore(path: path, transport: transport)
        core.loadEndpoints()
    }

    deinit { core.close(wait: false) }

    /// Closes the handle: transfers in flight end (``USBError/closed``),
    /// claimed interfaces are released, the node is closed. Safe twice, from
    /// any thread, with I/O pending.
    package func close() { core.close(wait: true) }

    /// Marks the device removed: transfers in flight end with
    /// ``USBError/deviceRemoved`` and later calls fail fast with it. The
    /// manager calls this when the device leaves; a transfer that sees the
    /// device gone does it too.
    package func markRemoved() { core.markRemoved() }

    /// Why the handle stopped working (removed or closed); nil while usable.
    package var endReason: USBError? { core.endReason }

    // MARK: Interfaces

    /// Claims interface `number` (a bound kernel driver is detached, and
    /// re-attached on release or close). Claiming twice is harmless.
    package func claim(interface number: Int) throws(USBError) {
        try core.claim(number)
    }

    /// Releases a claimed interface (re-attaching its kernel driver, if any).
    package func release(interface number: Int) throws(USBError) {
        try core.release(number)
    }

    /// Selects an alternate setting of a claimed interface.
    package func setAlternateSetting(_ setting: Int, interface number: Int) throws(USBError) {
        try core.usingTransport("set alternate setting \(setting) of interface \(number)") { t throws(USBError) in
            try t.setAlternateSetting(setting, interface: number)
        }
        core.loadEndpoints()
    }

    /// Clears a halt (stall) on an endpoint and resets its data toggle.
    package func clearHalt(endpoint: UInt8) throws(USBError) {
        try core.usingTransport("clear halt on endpoint 0x\(hex2(endpoint))") { t throws(USBError) in
            try t.clearHalt(endpoint: endpoint)
        }
    }

    // MARK: Bulk and interrupt transfers

    /// Sends `data` on an OUT endpoint (bulk or interrupt, as the endpoint
    /// is); returns the bytes sent. `zeroLengthPacket`: end with a ZLP when
    /// the length is a multiple of the packet size (so the device sees the
    /// end of the transfer). `timeout` nil: no limit.
    @discardableResult
    package func write(endpoint: UInt8, _ data: [UInt8], timeout: Duration? = .seconds(5),
                      zeroLengthPacket: Bool = false) throws(USBError) -> Int {
        // withUnsafeBytes rethrows untyped: the typed error goes out as a Result.
        try data.withUnsafeBytes { bytes in
            Result { () throws(USBError) in
                try write(endpoint: endpoint, from: bytes, timeout: timeout, zeroLengthPacket: zeroLengthPacket)
            }
        }.get()
    }

    /// Receives at most `length` bytes from an IN endpoint.
    package func read(endpoint: UInt8, length: Int, timeout: Duration? = .seconds(5)) throws(USBError) -> [UInt8] {
        let ep = try core.endpoint(endpoint, wantIn: true)
        return try core.transferSync(ep, length: length, timeout: timeout, zlp: false, fill: { _ in }) { Array($0) }
    }

    /// Sends the bytes of `buffer` on an OUT endpoint (bulk or interrupt),
    /// from the caller's memory; returns the bytes sent. A warm call (the
    /// endpoint used before, at this size or larger) allocates nothing.
    @discardableResult
    package func write(endpoint: UInt8, from buffer: UnsafeRawBufferPointer, timeout: Duration? = .seconds(5),
                      zeroLengthPacket: Bool = false) throws(USBError) -> Int {
        let ep = try core.endpoint(endpoint, wantIn: false)
        // libusb only reads an OUT transfer's buffer.
        return try core.transferSync(ep, memory: UnsafeMutableRawBufferPointer(mutating: buffer), timeout: timeout,
                                     zlp: zeroLengthPacket)
    }

    /// Receives at most `buffer.count` bytes from an IN endpoint into the
    /// caller's memory; returns how many came. A warm call allocates nothing.
    package func read(endpoint: UInt8, into buffer: UnsafeMutableRawBufferPointer,
                     timeout: Duration? = .seconds(5)) throws(USBError) -> Int {
        let ep = try core.endpoint(endpoint, wantIn: true)
        return try core.transferSync(ep, memory: buffer, timeout: timeout, zlp: false)
    }

    /// The async form of ``write(endpoint:_:timeout:zeroLengthPacket:)``;
    /// cancelling the task cancels the transfer (``USBError/cancelled``).
    @discardableResult
    package func write(endpoint: UInt8, _ data: [UInt8], timeout: Duration? = .seconds(5),
                      zeroLengthPacket: Bool = false) async throws(USBError) -> Int {
        let ep = try core.endpoint(endpoint, wantIn: false)
        return try await core.transferAsync(ep, length: data.count, timeout: timeout, zlp: zeroLengthPacket, fill: { buffer in
            data.withUnsafeBytes { buffer.copyMemory(from: $0) }
        }, take: { _, n in n })
    }

    /// The async form of ``read(endpoint:length:timeout:)``.
    package func read(endpoint: UInt8, length: Int, timeout: Duration? = .seconds(5)) async throws(USBError) -> [UInt8] {
        let ep = try core.endpoint(endpoint, wantIn: true)
        return try await core.transferAsync(ep, length: length, timeout: timeout, zlp: false, fill: nil) { buffer, n in
            Array(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    /// Starts reading an IN endpoint continuously with `transfers` transfers
    /// of `transferSize` bytes in flight (see ``USBInStream``).
    package func inStream(endpoint: UInt8, transferSize: Int = 16384, transfers: Int = 8,
                         timeout: Duration? = nil) throws(USBError) -> USBInStream {
        let ep = try core.endpoint(endpoint, wantIn: true)
        return try USBInStream(core: core, endpoint: ep, transferSize: transferSize, transfers: transfers, timeout: timeout)
    }

    /// Starts writing an OUT endpoint with `transfers` transfers of
    /// `transferSize` bytes queued (see ``USBOutStream``).
    package func outStream(endpoint: UInt8, transferSize: Int = 16384, transfers: Int = 8,
                           timeout: Duration? = nil, zeroLengthPacket: Bool = true) throws(USBError) -> USBOutStream {
        let ep = try core.endpoint(endpoint, wantIn: false)
        return try USBOutStream(core: core, endpoint: ep, transferSize: transferSize, transfers: transfers,
                                timeout: timeout, zeroLengthPacket: zeroLengthPacket)
    }

    /// Starts reading an IN endpoint in push mode: `handler` gets each
    /// completed transfer's bytes on the event thread (see ``USBReader``).
    package func startReading(endpoint: UInt8, transferSize: Int = 16384, transfers: Int = 8,
                             timeout: Duration? = nil,
                             _ handler: @escaping USBReader.Handler) throws(USBError) -> USBReader {
        let ep = try core.endpoint(endpoint, wantIn: true)
        return try USBReader(core: core, endpoint: ep, transferSize: transferSize, transfers: transfers,
                             timeout: timeout, handler: handler)
    }

    // MARK: Control transfers

    /// A control transfer with an OUT data stage (or none); returns the bytes sent.
    @discardableResult
    package func controlOut(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16,
                           data: [UInt8] = [], timeout: Duration? = .seconds(5)) throws(USBError) -> Int {
        // withUnsafeBytes rethrows untyped: the typed error goes out as a Result.
        try data.withUnsafeBytes { bytes in
            Result { () throws(USBError) in
                try controlOut(requestType: requestType, request: request, value: value, index: index, from: bytes,
                               timeout: timeout)
            }
        }.get()
    }

    /// A control transfer with an OUT data stage from the caller's memory;
    /// returns the bytes sent. A warm call allocates nothing.
    @discardableResult
    package func controlOut(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16,
                            from buffer: UnsafeRawBufferPointer, timeout: Duration? = .seconds(5)) throws(USBError) -> Int {
        try checkControl(requestType, wantIn: false, count: buffer.count)
        return try core.controlSync(setup: (requestType & 0x7F, request, value, index, UInt16(buffer.count)),
                                    timeout: timeout, fill: { if buffer.count > 0 { $0.copyMemory(from: buffer) } },
                                    take: { $0.count })
    }

    /// A control transfer with an IN data stage of at most `length` bytes.
    package func controlIn(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16,
                          length: Int, timeout: Duration? = .seconds(5)) throws(USBError) -> [UInt8] {
        try checkControl(requestType, wantIn: true, count: length)
        return try core.controlSync(setup: (requestType | 0x80, request, value, index, UInt16(length)),
                                    timeout: timeout, fill: { _ in }, take: { Array($0) })
    }

    /// A control transfer with an IN data stage of at most `buffer.count`
    /// bytes, into the caller's memory; returns how many came. A warm call
    /// allocates nothing.
    package func controlIn(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16,
                           into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = .seconds(5)) throws(USBError) -> Int {
        try checkControl(requestType, wantIn: true, count: buffer.count)
        return try core.controlSync(setup: (requestType | 0x80, request, value, index, UInt16(buffer.count)),
                                    timeout: timeout, fill: { _ in }) { received in
            if received.count > 0 { buffer.copyMemory(from: received) }
            return received.count
        }
    }

    /// The async form of ``controlIn(requestType:request:value:index:length:timeout:)``.
    package func controlIn(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16,
                          length: Int, timeout: Duration? = .seconds(5)) async throws(USBError) -> [UInt8] {
        try checkControl(requestType, wantIn: true, count: length)
        return try await core.controlAsync(setup: (requestType | 0x80, request, value, index, UInt16(length)),
                                           timeout: timeout, data: nil)
    }

    /// The async form of ``controlOut(requestType:request:value:index:data:timeout:)``.
    @discardableResult
    package func controlOut(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16,
                           data: [UInt8] = [], timeout: Duration? = .seconds(5)) async throws(USBError) -> Int {
        try checkControl(requestType, wantIn: false, count: data.count)
        return try await core.controlAsync(setup: (requestType & 0x7F, request, value, index, UInt16(data.count)),
                                           timeout: timeout, data: data).count
    }

    private func checkControl(_ requestType: UInt8, wantIn: Bool, count: Int) throws(USBError) {
        guard count >= 0, count <= Int(UInt16.max) else {
            throw USBError(refusing: LIBUSB_ERROR_INVALID_PARAM.rawValue,
                           operation: "control transfer of \(count) bytes (0...65535)")
        }
    }
}

/// The state shared by a ``USBDevice``, its transfers and streams.
final class USBDeviceCore: @unchecked Sendable {  // immutable after init except the locked state
    enum Phase: Equatable { case open, removed, closing, closed }

    struct State {
        var phase = Phase.open
        /// Transfers libusb owns now.
        var pending = PendingTransfers()
        /// Calls using the libusb handle outside transfers (claim, clear halt).
        var users = 0
        var claimed: Set<Int> = []
        var closeWaiters: [TransferWaiter] = []
        /// Idle synchronous transfers by endpoint address (0: control),
        /// reused so that a warm synchronous call allocates nothing.
        /// By ``USBDeviceCore/slotIndex(_:)``: no hashing on the hot path.
        var syncSlots = [SyncSlot?](repeating: nil, count: 32)
    }

    let path: String
    let transport: any USBTransport
    let state = Mutex(State())
    let endpoints = Mutex<[UInt8: USBDevice.Endpoint]>([:])
    #if DEBUG
    /// Unit tests only: called between a transfer's registration and its
    /// submission (a removal or close there finds the box idle).
    let afterRegistering = CallbackSlot<Void>()
    #endif

    init(path: String, transport: any USBTransport) {
        self.path = path
        self.transport = transport
    }

    var endReason: USBError? {
        switch state.withLock({ $0.phase }) {
        case .open: nil
        case .removed: USBError.removed(path)
        case .closing, .closed: USBError.closed(path)
        }
    }

    /// Reads the active configuration's endpoints (all alternate settings'
    /// first, then the current one is whatever the device uses: usbfs checks).
    func loadEndpoints() {
        var found: [UInt8: USBDevice.Endpoint] = [:]
        for (e, interface) in transport.endpointDescriptors() where found[e.address] == nil {
            found[e.address] = USBDevice.Endpoint(address: e.address, kind: e.transferType,
                                                  maxPacketSize: Int(e.maxPacketSize & 0x7FF), interface: interface)
        }
        endpoints.withLock { $0 = found }
    }

    func endpoint(_ address: UInt8, wantIn: Bool) throws(USBError) -> USBDevice.Endpoint {
        guard let ep = endpoints.withLock({ $0[address] }) else {
            throw USBError(refusing: LIBUSB_ERROR_NOT_FOUND.rawValue,
                           operation: "endpoint 0x\(hex2(address)) on \(path) (not in the active configuration; see `devif-usb info`)")
        }
        guard ep.isIn == wantIn else {
            throw USBError(refusing: LIBUSB_ERROR_INVALID_PARAM.rawValue,
                           operation: "endpoint 0x\(hex2(address)) is an \(ep.isIn ? "IN" : "OUT") endpoint; cannot \(wantIn ? "read from" : "write to") it")
        }
        guard ep.kind == .bulk || ep.kind == .interrupt else {
            throw USBError(refusing: LIBUSB_ERROR_NOT_SUPPORTED.rawValue,
                           operation: "endpoint 0x\(hex2(address)) is \(ep.kind); only bulk and interrupt endpoints are supported")
        }
        // usbfs wants the endpoint's interface claimed; do it on first use.
        try claim(ep.interface)
        return ep
    }

    // MARK: Phases

    private func refusal(_ phase: Phase, _ what: @autoclosure () -> String) -> USBError? {
        switch phase {
        case .open: nil
        case .removed: USBError.removed("\(what()) on \(path)")
        case .closing, .closed: USBError.closed("\(what()) on \(path)")
        }
    }

    func usingTransport<R>(_ what: String, _ body: (any USBTransport) throws(USBError) -> R) throws(USBError) -> R {
        let refused = state.withLock { s -> USBError? in
            if let r = refusal(s.phase, what) { return r }
            s.users += 1
            return nil
        }
        if let refused { throw refused }
        defer { endUse() }
        do {
            return try body(transport)
        } catch where error == .noDevice {
            markRemoved()
            throw USBError.removed("\(what) on \(path)")
        } catch {
            throw error.naming("\(error.operation) on \(path)")
        }
    }

    private func endUse() {
        let teardown = state.withLock { s -> Bool in
            s.users -= 1
            return shouldTearDown(&s)
        }
        if teardown { tearDown() }
    }

    func claim(_ number: Int) throws(USBError) {
        guard state.withLock({ !$0.claimed.contains(number) }) else { return }
        try usingTransport("claim interface \(number)") { t throws(USBError) in try t.claim(interface: number) }
        state.withLock { _ = $0.claimed.insert(number) }
    }

    func release(_ number: Int) throws(USBError) {
        guard state.withLock({ $0.claimed.remove(number) != nil }) else { return }
        try usingTransport("release interface \(number)") { t throws(USBError) in try t.release(interface: number) }
    }

    func markRemoved() {
        let inFlight = state.withLock { s -> [TransferBox] in
            guard s.phase == .open else { return [] }
            s.phase = .removed
            return s.pending.boxes
        }
        for box in inFlight { box.cancel() }
    }

    func close(wait: Bool) {
        let (inFlight, teardown, waiter) = state.withLock { s -> ([TransferBox], Bool, TransferWaiter?) in
            guard s.phase == .open || s.phase == .removed else {
                // Closing already: wait for the first close to finish.
                guard wait, s.phase == .closing, !transport.isEventThread else { return ([], false, nil) }
                let w = TransferWaiter()
                s.closeWaiters.append(w)
                return ([], false, w)
            }
            s.phase = .closing
            let teardown = shouldTearDown(&s)
            var w: TransferWaiter?
            if !teardown, wait, !transport.isEventThread {
                w = TransferWaiter()
                s.closeWaiters.append(w!)
            }
            return (s.pending.boxes, teardown, w)
        }
        for box in inFlight { box.cancel() }
        if teardown {
            if transport.isEventThread { DispatchQueue.global().async { self.tearDown() } } else { tearDown() }
        }
        _ = waiter?.wait()
    }

    /// Decides, under the lock, whether this caller tears down (once).
    private func shouldTearDown(_ s: inout State) -> Bool {
        guard s.phase == .closing, s.pending.isEmpty, s.users == 0 else { return false }
        s.phase = .closed
        return true
    }

    private func tearDown() {
        let (claimed, waiters) = state.withLock { s in
            // The slots' completions hold this core: let it go.
            defer { s.claimed = []; s.closeWaiters = []; s.syncSlots = Array(repeating: nil, count: 32) }
            return (s.claimed, s.closeWaiters)
        }
        for number in claimed.sorted() { try? transport.release(interface: number) }
        transport.close()
        for w in waiters { w.finish(.success(0)) }
    }

    // MARK: Transfers

    /// Registers and submits `box`; `completion` runs on the event thread
    /// after the box is unregistered. The device's end (removal, close) maps
    /// a cancelled or failed status to the matching error.
    /// - Parameter pumped: the caller handles events itself until the
    ///   completion (``USBContext/pump(until:)``); otherwise the transfer
    ///   counts as asynchronous work for the on-demand event thread.
    func submit(_ box: TransferBox, type: USBEndpoint.TransferType, endpoint: UInt8, length: Int, timeout: Duration?, zlp: Bool,
                pumped: Bool = false,
                completion: @escaping @Sendable (TransferBox, Result<Int, USBError>) -> Void) throws(USBError) {
        try submit(box, type: type, endpoint: endpoint, length: length, timeout: timeout, zlp: zlp, pumped: pumped,
                   wrapped: wrap(pumped: pumped, completion))
    }

    /// The completion `submit` hands to the box: it unregisters the box and
    /// maps the status (see `finished`). A caller that resubmits one box
    /// again and again (``USBReader``) makes it once and passes it to
    /// `submit(_:...wrapped:)`, so a resubmission allocates nothing.
    func wrap(pumped: Bool = false,
              _ completion: @escaping @Sendable (TransferBox, Result<Int, USBError>) -> Void) -> TransferBox.Completion {
        return { [self] box, result in
            finished(box, result, completion)
            if !pumped { transport.endAsync() }
        }
    }

    func submit(_ box: TransferBox, type: USBEndpoint.TransferType, endpoint: UInt8, length: Int, timeout: Duration?, zlp: Bool,
                pumped: Bool = false, wrapped: @escaping TransferBox.Completion) throws(USBError) {
        if !pumped { transport.beginAsync() }
        do throws(USBError) {
            try submitRegistered(box, type: type, endpoint: endpoint, length: length, timeout: timeout, zlp: zlp,
                                 wrapped: wrapped)
        } catch {
            if !pumped { transport.endAsync() }
            throw error
        }
    }

    private func submitRegistered(_ box: TransferBox, type: USBEndpoint.TransferType, endpoint: UInt8, length: Int, timeout: Duration?,
                                  zlp: Bool, wrapped: @escaping TransferBox.Completion) throws(USBError) {
        // Registered first and submitted outside the lock: the submission is
        // an ioctl that takes usbfs's device lock, and holding this one
        // across it made the completions of the device's other transfers (on
        // the event thread) wait for every submission from another thread.
        if let refused = state.withLock({ s -> USBError? in
            if let r = refusal(s.phase, name(of: box)) { return r }
            s.pending.insert(box)
            return nil
        }) { throw refused }
        #if DEBUG
        afterRegistering.call(())
        #endif
        do throws(USBError) {
            try box.submit(type: type, endpoint: endpoint, length: length, timeout: timeout,
                           zeroLengthPacket: zlp, completion: wrapped)
        } catch {
            // A close that came meanwhile waits for this box to leave `pending`.
            let teardown = state.withLock { s -> Bool in
                s.pending.remove(box)
                return shouldTearDown(&s)
            }
            if teardown { DispatchQueue.global().async { self.tearDown() } }
            // Submitting to a leaving device can fail with an I/O error too.
            if error == .noDevice || (error == .io && transport.hungUp()) { markRemoved(); throw USBError.removed(name(of: box)) }
            throw error
        }
        // A removal or close between the registration and the submission
        // found the box idle, and its cancel did nothing: cancel it now, or it
        // would stay in flight with nobody to end it. (One that comes after
        // this check finds the box pending.)
        if state.withLock({ $0.phase != .open }) { box.cancel() }
    }

    private func finished(_ box: TransferBox, _ result: TransferResult,
                          _ completion: @Sendable (TransferBox, Result<Int, USBError>) -> Void) {
        // During an unplug a transfer may fail with a protocol error a few
        // milliseconds before usbfs sees the disconnect (seen in the lab:
        // LIBUSB_TRANSFER_ERROR instead of NO_DEVICE); tell the two apart.
        // Once one transfer showed the removal, the others in flight need
        // not wait for the hang-up again (they complete one after another on
        // one thread: 8 in flight could add up to 8 waits).
        // (A completed transfer says nothing of a removal: one lock, below.)
        if !result.completed {
            let knownRemoved = state.withLock { $0.phase == .removed }
            if !knownRemoved, result.status == .noDevice || (result.status == .failed && transport.hungUp()) {
                markRemoved()
            }
        }
        let (phase, teardown) = state.withLock { s -> (Phase, Bool) in
            s.pending.remove(box)
            let phase = s.phase
            return (phase, shouldTearDown(&s))
        }
        let outcome: Result<Int, USBError>
        if result.completed {
            outcome = .success(result.length)
        } else if phase == .removed || result.status == .noDevice {
            outcome = .failure(.removed(name(of: box)))
        } else if phase == .closing || phase == .closed {
            outcome = .failure(.closed(name(of: box)))
        } else {
            outcome = .failure(USBError(transferStatus: result.status, operation: name(of: box)) ?? .io)
        }
        completion(box, outcome)
        // libusb still uses the device handle after a callback returns, so
        // the handle is never closed from inside one.
        if teardown { DispatchQueue.global().async { self.tearDown() } }
    }

    func describe(_ ep: USBDevice.Endpoint) -> String {
        "\(ep.kind) \(ep.isIn ? "IN" : "OUT") 0x\(hex2(ep.address)) on \(path)"
    }

    func transferType(_ ep: USBDevice.Endpoint) -> USBEndpoint.TransferType {
        ep.kind == .interrupt ? .interrupt : .bulk
    }

    /// Submits and waits on a reused transfer: `fill` writes the OUT data
    /// into the transfer's buffer, `take` reads the bytes that came (IN) or
    /// the count sent (OUT). Both are non-escaping (not optional closures,
    /// which escape): their captures stay on the stack, and a warm call
    /// allocates nothing whether or not the compiler inlines it.
    func transferSync<R>(_ ep: USBDevice.Endpoint, length: Int, timeout: Duration?, zlp: Bool,
                         fill: (UnsafeMutableRawBufferPointer) -> Void,
                         take: (UnsafeRawBufferPointer) -> R) throws(USBError) -> R {
        let slot = try syncSlot(ep.address, capacity: length) { describe(ep) }
        defer { giveBack(slot, ep.address) }
        fill(UnsafeMutableRawBufferPointer(rebasing: slot.box.buffer[0..<length]))
        let n = try submitAndWait(slot, type: transferType(ep), endpoint: ep.address, length: length,
                                  timeout: timeout, zlp: zlp)
        return take(UnsafeRawBufferPointer(rebasing: slot.box.buffer[0..<n]))
    }

    /// A synchronous transfer out of or into the caller's memory, which
    /// libusb reads or fills directly (the call returns only after the
    /// completion); returns the bytes transferred.
    func transferSync(_ ep: USBDevice.Endpoint, memory: UnsafeMutableRawBufferPointer, timeout: Duration?,
                      zlp: Bool) throws(USBError) -> Int {
        guard memory.count > 0 else {
            return try transferSync(ep, length: 0, timeout: timeout, zlp: zlp, fill: { _ in }, take: { $0.count })
        }
        let slot = try syncSlot(ep.address, capacity: 0) { describe(ep) }
        defer { giveBack(slot, ep.address) }
        return try slot.box.lending(memory) { () throws(USBError) in
            try submitAndWait(slot, type: transferType(ep), endpoint: ep.address, length: memory.count, timeout: timeout,
                              zlp: zlp)
        }
    }

    /// The endpoint's idle synchronous transfer, grown to `capacity`, or a
    /// new one (first use, or another thread's call on the same endpoint
    /// holds it). `operation` names it in errors; built once per slot.
    private func syncSlot(_ address: UInt8, capacity: Int, operation: () -> String) throws(USBError) -> SyncSlot {
        let index = Self.slotIndex(address)
        if let slot = state.withLock({ s in s.syncSlots[index].take() }) {
            slot.box.reserve(capacity)
            return slot
        }
        let box = try TransferBox(capacity: capacity, transport: transport)
        box.operation = operation()
        let waiter = TransferWaiter()
        return SyncSlot(box: box, waiter: waiter, completion: wrap(pumped: true) { _, r in waiter.finish(r) })
    }

    /// An endpoint address's place among the 32 (number 0-15, IN or OUT).
    private static func slotIndex(_ address: UInt8) -> Int { Int(address & 0x0F) | (address & 0x80 != 0 ? 16 : 0) }

    private func giveBack(_ slot: SyncSlot, _ address: UInt8) {
        state.withLock { s in
            let index = Self.slotIndex(address)
            if s.phase == .open, s.syncSlots[index] == nil { s.syncSlots[index] = slot }
        }
    }

    /// The one blocking path: submit, then handle events on the calling
    /// thread until the completion (never from inside a completion). The
    /// box is idle again when this returns.
    private func submitAndWait(_ slot: SyncSlot, type: USBEndpoint.TransferType, endpoint: UInt8, length: Int, timeout: Duration?,
                               zlp: Bool) throws(USBError) -> Int {
        guard !transport.isEventThread else {
            throw USBError(refusing: LIBUSB_ERROR_BUSY.rawValue,
                           operation: "a synchronous transfer on devif's event thread (from a completion handler or a task on USBHandle.completionExecutor): use the async form")
        }
        slot.waiter.reset()
        try submit(slot.box, type: type, endpoint: endpoint, length: length, timeout: timeout, zlp: zlp, pumped: true,
                   wrapped: slot.completion)
        transport.pump(until: slot.waiter)
        return try slot.waiter.wait().get()
    }

    func transferAsync<R: Sendable>(_ ep: USBDevice.Endpoint, length: Int, timeout: Duration?, zlp: Bool,
                                    fill: ((UnsafeMutableRawBufferPointer) -> Void)?,
                                    take: @escaping @Sendable (UnsafeMutableRawBufferPointer, Int) -> R) async throws(USBError) -> R {
        let box = try TransferBox(capacity: length, transport: transport)
        box.operation = describe(ep)
        fill?(UnsafeMutableRawBufferPointer(rebasing: box.buffer[0..<length]))
        return try await awaitTransfer(box) { [self] box, done throws(USBError) in
            try submit(box, type: transferType(ep), endpoint: ep.address, length: length, timeout: timeout, zlp: zlp) { box, r in
                done(r.map { take(box.buffer, $0) })
            }
        }
    }

    /// Submits through `start` and awaits the completion; task cancellation
    /// cancels the transfer (the completion still comes, and is awaited).
    private func awaitTransfer<R: Sendable>(
        _ box: TransferBox,
        _ start: (TransferBox, @escaping @Sendable (Result<R, USBError>) -> Void) throws(USBError) -> Void
    ) async throws(USBError) -> R {
        let result: Result<R, USBError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<R, USBError>, Never>) in
                do throws(USBError) {
                    try start(box) { c.resume(returning: $0) }
                    // Cancelled before the handler could see a pending transfer.
                    if Task.isCancelled { box.cancel() }
                } catch {
                    c.resume(returning: .failure(error))
                }
            }
        } onCancel: {
            box.cancel()
        }
        switch result {
        case .success(let value): return value
        case .failure(let error):
            // A cancellation we asked for is reported as such, not as an I/O error.
            if Task.isCancelled, error == .cancelled || error == .interrupted { throw USBError.cancelled(name(of: box)) }
            throw error
        }
    }

    // MARK: Control

    typealias Setup = (requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, length: UInt16)

    private func controlBox(_ setup: Setup, data: [UInt8]?, timeout: Duration?) throws(USBError) -> TransferBox {
        let box = try TransferBox(capacity: 8 + Int(setup.length), transport: transport)
        box.operation = Self.describe(setup, path)
        Self.fillSetup(box.buffer, setup)
        if let data {
            data.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: box.buffer[8..<(8 + data.count)]).copyMemory(from: $0) }
        }
        return box
    }

    private static func describe(_ setup: Setup, _ path: String) -> String {
        "control request 0x\(hex2(setup.request)) (type 0x\(hex2(setup.requestType)), value 0x\(hex4(setup.value)), index 0x\(hex4(setup.index))) on \(path)"
    }

    /// The setup packet (the data stage follows it).
    private static func fillSetup(_ b: UnsafeMutableRawBufferPointer, _ setup: Setup) {
        b[0] = setup.requestType
        b[1] = setup.request
        b[2] = UInt8(setup.value & 0xFF); b[3] = UInt8(setup.value >> 8)
        b[4] = UInt8(setup.index & 0xFF); b[5] = UInt8(setup.index >> 8)
        b[6] = UInt8(setup.length & 0xFF); b[7] = UInt8(setup.length >> 8)
    }

    private static func controlData(_ box: TransferBox, _ n: Int, isIn: Bool) -> [UInt8] {
        isIn ? Array(UnsafeRawBufferPointer(rebasing: box.buffer[8..<(8 + n)])) : Array(repeating: 0, count: n)
    }

    /// As ``transferSync(_:length:timeout:zlp:fill:take:)`` for the control
    /// pipe: `fill` writes the OUT data stage, `take` reads the data that
    /// came (IN) or was sent (OUT). The request is named in errors only
    /// when one happens (`name(of:)`), so a warm call allocates nothing.
    func controlSync<R>(setup: Setup, timeout: Duration?, fill: (UnsafeMutableRawBufferPointer) -> Void,
                        take: (UnsafeRawBufferPointer) -> R) throws(USBError) -> R {
        let slot = try syncSlot(0, capacity: 8 + Int(setup.length)) { "control request on \(path)" }
        defer { giveBack(slot, 0) }
        slot.box.controlSetup = (setup.requestType, setup.request, setup.value, setup.index)
        Self.fillSetup(slot.box.buffer, setup)
        fill(UnsafeMutableRawBufferPointer(rebasing: slot.box.buffer[8..<(8 + Int(setup.length))]))
        let n = try submitAndWait(slot, type: .control, endpoint: 0, length: 8 + Int(setup.length),
                                  timeout: timeout, zlp: false)
        return take(UnsafeRawBufferPointer(rebasing: slot.box.buffer[8..<(8 + n)]))
    }

    /// What errors call `box`'s transfer: its operation, or for the control
    /// pipe's reused box the request it carries now (built only on error).
    func name(of box: TransferBox) -> String {
        guard let s = box.controlSetup else { return box.operation }
        return Self.describe((s.requestType, s.request, s.value, s.index, 0), path)
    }

    func controlAsync(setup: Setup, timeout: Duration?, data: [UInt8]?) async throws(USBError) -> [UInt8] {
        let box = try controlBox(setup, data: data, timeout: timeout)
        let isIn = setup.requestType & 0x80 != 0
        return try await awaitTransfer(box) { [self] box, done throws(USBError) in
            try submit(box, type: .control, endpoint: 0, length: 8 + Int(setup.length),
                       timeout: timeout, zlp: false) { box, r in
                done(r.map { Self.controlData(box, $0, isIn: isIn) })
            }
        }
    }
}

/// A synchronous transfer kept for reuse: the box, its waiter and the
/// completion that finishes the waiter, made once.
final class SyncSlot: Sendable {
    let box: TransferBox
    let waiter: TransferWaiter
    let completion: TransferBox.Completion

    init(box: TransferBox, waiter: TransferWaiter, completion: @escaping TransferBox.Completion) {
        self.box = box
        self.waiter = waiter
        self.completion = completion
    }
}

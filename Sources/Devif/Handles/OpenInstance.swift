import DevifCore
import DevifHID
import DevifUSB
import Synchronization

/// What a handle's holders are told when its device goes away, in this
/// order (as Windows' DBT_DEVICEREMOVEPENDING and DBT_DEVICEREMOVECOMPLETE).
public enum RemovalNotice: Sendable, Hashable {
    /// The device is gone: I/O in progress is being ended with
    /// ``/DevifCore/HandleError/deviceRemoved``; new calls fail with it at once.
    case pending
    /// No I/O on the handle is in progress any more: close it.
    case complete
}

/// The manager's record of one open instance: the resource behind a
/// ``Handle`` in the manager's ``HandleTable``.
final class OpenInstance: Sendable {
    enum Backend: Sendable {
        case usb(USBDevice)
        case hid(HIDDevice)
    }

    let symbolicLink: SymbolicLink
    /// Its text, which errors carry.
    var link: String { symbolicLink.rawValue }
    /// The pipeline's key of the device ("usb:/dev/bus/usb/001/004"): its
    /// removal marks this instance removed.
    let deviceKey: DeviceKey
    let backend: Backend
    let tracker = RemovalTracker()

    init(link: SymbolicLink, deviceKey: DeviceKey, backend: Backend) {
        self.symbolicLink = link
        self.deviceKey = deviceKey
        self.backend = backend
    }

    /// The device left: end the I/O in progress; holders get `.pending`, and
    /// `.complete` once the last call in progress has returned.
    func markRemoved() {
        guard tracker.removed() else { return }
        switch backend {
        case .usb(let d): d.markRemoved()
        case .hid(let d): d.markRemoved()
        }
        tracker.settle()
    }

    func close() {
        switch backend {
        case .usb(let d): d.close()
        case .hid(let d): d.close()
        }
        tracker.finish()
    }
}

/// Counts the calls in progress on one handle and turns a removal into the
/// two notices, in order, for every listener.
final class RemovalTracker: Sendable {
    private enum Stage { case none, pending, complete }
    private struct State {
        var inFlight = 0
        var stage = Stage.none
        var listeners: [UInt64: AsyncStream<RemovalNotice>.Continuation] = [:]
        var nextID: UInt64 = 0
        /// The handle was closed: no listener is kept from then on.
        var finished = false
    }
    private let state = Mutex(State())

    /// A call begins (it runs whatever the stage; the device refuses it).
    func begin() { state.withLock { $0.inFlight += 1 } }

    /// A call ended.
    func end() {
        state.withLock { s in
            s.inFlight -= 1
            if s.stage == .pending, s.inFlight == 0 { complete(&s) }
        }
    }

    /// First removal: `.pending` to everyone. False if already removed.
    func removed() -> Bool {
        state.withLock { s -> Bool in
            guard s.stage == .none else { return false }
            s.stage = .pending
            for l in s.listeners.values { l.yield(.pending) }
            return true
        }
    }

    /// After the device was told: complete now if nothing is in progress.
    func settle() {
        state.withLock { s in
            if s.stage == .pending, s.inFlight == 0 { complete(&s) }
        }
    }

    /// The handle is closed: listeners' streams end.
    func finish() {
        let listeners = state.withLock { s in
            s.finished = true
            defer { s.listeners = [:] }
            return Array(s.listeners.values)
        }
        for l in listeners { l.finish() }
    }

    private func complete(_ s: inout State) {
        s.stage = .complete
        // Yielding under the lock keeps `.pending` before `.complete` for every listener.
        for l in s.listeners.values { l.yield(.complete); l.finish() }
        s.listeners = [:]
    }

    /// A stream of the notices; one already given is given again first.
    /// After close it ends at once, after those (nothing would finish it).
    func notices() -> AsyncStream<RemovalNotice> {
        let (stream, continuation) = AsyncStream<RemovalNotice>.makeStream()
        state.withLock { s in
            if s.finished, s.stage != .complete {
                if s.stage == .pending { continuation.yield(.pending) }
                continuation.finish()
                return
            }
            switch s.stage {
            case .none:
                s.nextID += 1
                s.listeners[s.nextID] = continuation
            case .pending:
                continuation.yield(.pending)
                s.nextID += 1
                s.listeners[s.nextID] = continuation
            case .complete:
                continuation.yield(.pending)
                continuation.yield(.complete)
                continuation.finish()
            }
        }
        return stream
    }
}

import DevifCore
import FoundationEssentials
import Glibc
import Synchronization

/// A device's default control pipe as the MS OS fetch uses it: IN control
/// transfers only. The libusb handle is one; tests use a fake device.
protocol ControlPipe {
    /// A control transfer from the device: at most `length` bytes.
    mutating func controlIn(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16,
                            length: Int, timeoutMilliseconds: Int) throws(USBError) -> [UInt8]
}

/// What the MS OS fetch needs to know about a device before asking it.
struct MSOSDeviceFacts: Sendable {
    var vendorID: UInt16
    var productID: UInt16
    var bcdDevice: UInt16
    var bcdUSB: UInt16
}

/// Reads the interface class GUIDs a device declares in Microsoft OS
/// descriptors, as Windows does:
///
/// 1. **MS OS 2.0**, for bcdUSB 0x0201 or later: the BOS descriptor; its MS
///    OS 2.0 platform capability names the descriptor set for Windows 8.1
///    and the vendor code; the set is fetched with that vendor request
///    (wIndex 7) and parsed (`DeviceInterfaceGUID(s)` registry properties).
/// 2. **MS OS 1.0**, only when no 2.0 set was read and the catalog allows it
///    for this VID/PID/bcdDevice: string descriptor 0xEE ("MSFT100" and the
///    vendor code; the answer is remembered per model, so it is asked once),
///    then the extended compat ID (wIndex 4) and each function's extended
///    properties (wIndex 5).
///
/// Every request has a short timeout, and the whole fetch gives up at the
/// first timeout, disappearance or I/O error, or when its time budget is
/// spent: a device that stalls or lies costs the enumeration at most one
/// budget. Nothing here throws: what went wrong becomes a note.
struct MSOSFetcher {
    /// Tuning and policy.
    struct Settings: Sendable {
        /// Timeout of each request.
        var requestTimeoutMilliseconds: Int = 300
        /// The whole fetch stops asking after this long.
        var budget: Duration = .seconds(2)
        /// Which devices may be asked for string 0xEE (the catalog's `[ms-os-1.0]`).
        var msOS10Probes: [MSOS10ProbeRule] = []
        /// Where probe answers are remembered; nil: not remembered.
        var memory: MSOS10ProbeMemory?
        /// The Windows version whose MS OS 2.0 descriptor set is fetched.
        var windowsVersion: UInt32 = BOSDescriptor.windows81
    }

    /// The result of one fetch.
    struct Outcome: Sendable {
        var guids: [FirmwareGUID] = []
        /// What could not be read or did not parse, one line each.
        var notes: [String] = []
        /// Whether string 0xEE was requested from the device (not answered from memory).
        var askedOSString = false
        /// Whether an MS OS 2.0 descriptor set was read.
        var readMSOS20Set = false
        /// Whether the BOS was read and has no MS OS 2.0 capability (remembered per model).
        var msOS20Absent = false
    }

    /// Larger descriptors are not asked for (usbfs refuses control transfers
    /// over a page, and no real descriptor set comes near it).
    static let maximumLength = 4096
    /// Extended properties are asked for at most this many interfaces.
    static let maximumInterfaces = 32

    let settings: Settings


    func fetch<P: ControlPipe>(_ pipe: inout P, device: MSOSDeviceFacts) -> Outcome {
        var outcome = Outcome()
        var session = Session(pipe: pipe, timeout: settings.requestTimeoutMilliseconds,
                              deadline: ContinuousClock.now + settings.budget)
        defer { pipe = session.pipe }
        do {
            if device.bcdUSB >= 0x0201, !Self.knownWithoutMSOS20(device, settings.memory) {
                try readMSOS20(&session, &outcome)
                if outcome.msOS20Absent {
                    do {
                        try settings.memory?.rememberMSOS20Absent(true, vendorID: device.vendorID, productID: device.productID,
                                                                   bcdDevice: device.bcdDevice)
                    } catch {
                        outcome.notes.append("MS OS 2.0: could not remember that this model has none (\(error))")
                    }
                }
            }
            if !outcome.readMSOS20Set,
               settings.msOS10Probes.allowMSOS10Probe(vendorID: device.vendorID, productID: device.productID,
                                                      bcdDevice: device.bcdDevice) {
                try readMSOS10(&session, device, &outcome)
            }
        } catch {
            outcome.notes.append(error.note)
        }
        return outcome
    }

    // MARK: MS OS 2.0

    private func readMSOS20<P>(_ s: inout Session<P>, _ outcome: inout Outcome) throws(GiveUp) {
        // GET_DESCRIPTOR(BOS): the 5-byte header first, for wTotalLength.
        guard let header = try s.request("BOS descriptor", 0x80, 6, UInt16(BOSDescriptor.descriptorType) << 8, 0, 5,
                                         notes: &outcome.notes) else { return }
        guard header.count >= 5, header[1] == BOSDescriptor.descriptorType else {
            outcome.notes.append("BOS descriptor: the device answered \(header.count) bytes that are not a BOS descriptor header")
            return
        }
        let total = Int(header[2]) | Int(header[3]) << 8
        var bytes = header
        if total > 5 {
            guard total <= Self.maximumLength else {
                outcome.notes.append("BOS descriptor: wTotalLength \(total) is over \(Self.maximumLength): not read")
                return
            }
            guard let full = try s.request("BOS descriptor", 0x80, 6, UInt16(BOSDescriptor.descriptorType) << 8, 0, total,
                                           notes: &outcome.notes) else { return }
            bytes = full
        }
        let bos = BOSDescriptor.parse(bytes)
        for issue in bos.issues { outcome.notes.append("BOS descriptor: \(issue)") }
        guard let info = bos.msOS20DescriptorSet(forWindowsVersion: settings.windowsVersion) else {
            // A well-formed BOS without the capability: nothing to ask this model again.
            if bos.msOS20DescriptorSets.isEmpty, bos.issues.isEmpty { outcome.msOS20Absent = true }
            if !bos.msOS20DescriptorSets.isEmpty {
                outcome.notes.append("MS OS 2.0: no descriptor set for Windows \(String(settings.windowsVersion, radix: 16)) or earlier")
            }
            return
        }
        let length = Int(info.descriptorSetTotalLength)
        guard length >= MSOS20DescriptorSet.setHeaderLength, length <= Self.maximumLength else {
            outcome.notes.append("MS OS 2.0: the platform capability gives a descriptor set length of \(length): not read")
            return
        }
        // Vendor request to the device: bRequest = vendor code, wIndex 7 (MS_OS_20_DESCRIPTOR_INDEX).
        guard let setBytes = try s.request("MS OS 2.0 descriptor set (vendor code \(hex2(info.vendorCode)))",
                                           0xC0, info.vendorCode, 0, 7, length, notes: &outcome.notes) else { return }
        let set = MSOS20DescriptorSet.parse(setBytes, for: info)
        for issue in set.issues { outcome.notes.append("MS OS 2.0 descriptor set: \(issue)") }
        outcome.readMSOS20Set = true
        append(set.declaredInterfaceGUIDs, to: &outcome)
    }

    /// Whether the memory says this model's BOS has no MS OS 2.0 capability.
    static func knownWithoutMSOS20(_ device: MSOSDeviceFacts, _ memory: MSOS10ProbeMemory?) -> Bool {
        (try? memory?.msOS20Absent(vendorID: device.vendorID, productID: device.productID,
                                   bcdDevice: device.bcdDevice)) == true
    }

    // MARK: MS OS 1.0

    private func readMSOS10<P>(_ s: inout Session<P>, _ device: MSOSDeviceFacts, _ outcome: inout Outcome) throws(GiveUp) {
        let memory = settings.memory
        var remembered: MSOS10ProbeAnswer?
        do {
            remembered = try memory?.answer(vendorID: device.vendorID, productID: device.productID, bcdDevice: device.bcdDevice)
        } catch {
            outcome.notes.append("MS OS 1.0: the remembered probe answer could not be read (\(error)); asking the device")
        }
        let answer: MSOS10ProbeAnswer
        if let remembered {
            answer = remembered
        } else {
            outcome.askedOSString = true
            // GET_DESCRIPTOR(STRING 0xEE), language 0, 18 bytes: exactly what Windows sends.
            let bytes: [UInt8]?
            do {
                bytes = try s.requestOrThrow(0x80, 6, 0x0300 | UInt16(MSOS10.osStringDescriptorIndex), 0, 0x12)
            } catch let error where error == .noDevice || s.outOfTime {
                // Gone, or no time left: no answer from the device, so nothing to remember.
                throw GiveUp(note: "MS OS 1.0 string descriptor 0xEE: \(error)")
            } catch {
                // A stall, a timeout or an I/O error: the device has no OS
                // string (or cannot take the question): remembered as absent.
                bytes = nil
                outcome.notes.append("MS OS 1.0 string descriptor 0xEE: \(error); remembered as absent")
            }
            answer = bytes.flatMap(MSOS10.vendorCode(fromOSStringDescriptor:)).map { .present(vendorCode: $0) } ?? .absent
            do {
                try memory?.remember(answer, vendorID: device.vendorID, productID: device.productID, bcdDevice: device.bcdDevice)
            } catch {
                outcome.notes.append("MS OS 1.0: the probe answer could not be remembered (\(error))")
            }
            if s.gaveUp { throw GiveUp(note: "MS OS 1.0: the device stopped answering after string 0xEE") }
        }
        guard case .present(let vendorCode) = answer else { return }

        // Extended compat ID (device recipient, wIndex 4): the functions and their first interfaces.
        var interfaces: [UInt8] = []
        if let bytes = try readSized("MS OS 1.0 extended compat ID", &s, 0xC0, vendorCode, 0,
                                     MSOS10.extendedCompatIDIndex, headerLength: MSOS10.ExtendedCompatID.headerLength,
                                     notes: &outcome.notes) {
            let compat = MSOS10.ExtendedCompatID.parse(bytes)
            for issue in compat.issues { outcome.notes.append("MS OS 1.0 extended compat ID: \(issue)") }
            for f in compat.functions where !interfaces.contains(f.firstInterfaceNumber) { interfaces.append(f.firstInterfaceNumber) }
        }
        // A device with no function list has its properties on interface 0 (as Windows asks).
        if interfaces.isEmpty { interfaces = [0] }
        for number in interfaces.prefix(Self.maximumInterfaces) {
            // Interface recipient, wValue = interface number (low byte, as Linux's
            // composite gadget and Windows have it), wIndex 5.
            guard let bytes = try readSized("MS OS 1.0 extended properties of interface \(number)", &s, 0xC1, vendorCode,
                                            UInt16(number), MSOS10.extendedPropertiesIndex,
                                            headerLength: MSOS10.ExtendedProperties.headerLength, notes: &outcome.notes)
            else { continue }
            let properties = MSOS10.ExtendedProperties.parse(bytes, interfaceNumber: number)
            for issue in properties.issues { outcome.notes.append("MS OS 1.0 extended properties of interface \(number): \(issue)") }
            append(properties.declaredInterfaceGUIDs, to: &outcome)
        }
    }

    /// An MS OS 1.0 extended descriptor: its header first (dwLength, little
    /// endian, at offset 0), then the whole of it.
    private func readSized<P>(_ what: String, _ s: inout Session<P>, _ type: UInt8, _ request: UInt8, _ value: UInt16,
                           _ index: UInt16, headerLength: Int, notes: inout [String]) throws(GiveUp) -> [UInt8]? {
        guard let header = try s.request(what, type, request, value, index, headerLength, notes: &notes) else { return nil }
        guard header.count >= 4 else {
            notes.append("\(what): the header is \(header.count) bytes, not \(headerLength)")
            return nil
        }
        let total = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
        guard total > header.count else { return header }
        guard total <= Self.maximumLength else {
            notes.append("\(what): dwLength \(total) is over \(Self.maximumLength): not read")
            return nil
        }
        return try s.request(what, type, request, value, index, total, notes: &notes)
    }

    private func append(_ declared: [FirmwareGUID], to outcome: inout Outcome) {
        for g in declared where !outcome.guids.contains(g) { outcome.guids.append(g) }
    }

}

// MARK: Requests

/// The fetch gave up: the device stopped answering.
private struct GiveUp: Error { let note: String }

/// One fetch's pipe, timeout and deadline.
private struct Session<P: ControlPipe> {
    var pipe: P
    let timeout: Int
    let deadline: ContinuousClock.Instant
    private(set) var gaveUp = false
    /// The budget was spent (no request was sent).
    private(set) var outOfTime = false

    init(pipe: P, timeout: Int, deadline: ContinuousClock.Instant) {
        self.pipe = pipe
        self.timeout = timeout
        self.deadline = deadline
    }

    /// A request whose failure is a note (nil), except those after which
    /// nothing more should be asked: a timeout, the device gone, an I/O
    /// error, or the budget spent.
    mutating func request(_ what: String, _ type: UInt8, _ request: UInt8, _ value: UInt16, _ index: UInt16,
                          _ length: Int, notes: inout [String]) throws(GiveUp) -> [UInt8]? {
        do {
            return try requestOrThrow(type, request, value, index, length)
        } catch {
            if gaveUp { throw GiveUp(note: "\(what): \(error); no more MS OS requests to this device") }
            notes.append("\(what): \(error)")
            return nil
        }
    }

    /// A request; a timeout, disappearance or I/O error also marks the
    /// session given up. Past the deadline nothing is sent.
    mutating func requestOrThrow(_ type: UInt8, _ request: UInt8, _ value: UInt16, _ index: UInt16,
                                 _ length: Int) throws(USBError) -> [UInt8] {
        guard !gaveUp, ContinuousClock.now < deadline else {
            if !gaveUp { outOfTime = true }
            gaveUp = true
            throw USBError.timeoutError("MS OS requests (time budget spent)")
        }
        do {
            // Never wait past the budget: the last request gets what is left of it.
            let left = deadline - ContinuousClock.now
            let leftMilliseconds = Int(left.milliseconds)
            let bytes = try pipe.controlIn(requestType: type, request: request, value: value, index: index, length: length,
                                           timeoutMilliseconds: max(1, min(timeout, leftMilliseconds)))
            // A device that answers more than asked lies about lengths: keep what was asked.
            return bytes.count > length ? Array(bytes.prefix(length)) : bytes
        } catch {
            if error == .timeout || error == .noDevice || error == .io { gaveUp = true }
            throw error
        }
    }
}

import CLibUSB

/// Reads USB string descriptors through an open handle: the fallback when
/// sysfs lacks a string. Each request has its own timeout, and reading stops
/// at the first timeout or disappearance: an unresponsive device costs one
/// timeout, not one per string.
struct StringDescriptorReader {
    let handle: OpaquePointer
    let timeoutMilliseconds: UInt32
    private(set) var language: UInt16?
    /// Set once the device stopped answering; later reads are skipped.
    private(set) var gaveUp: USBError?

    init(handle: OpaquePointer, timeoutMilliseconds: UInt32) {
        self.handle = handle
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// String `index` in the device's first language (as the kernel picks);
    /// nil when it cannot be read.
    mutating func string(_ index: UInt8) -> String? {
        guard index != 0, gaveUp == nil else { return nil }
        if language == nil {
            guard let zero = descriptor(index: 0, language: 0), zero.count >= 2 else { return nil }
            language = UInt16(zero[0]) | UInt16(zero[1]) << 8
        }
        guard let language, let body = descriptor(index: index, language: language) else { return nil }
        // An empty string counts as none, as the kernel (and so sysfs) has it:
        // what a device is called must not depend on who may open it.
        let text = StringDescriptor.decode(utf16le: body)
        return text.isEmpty ? nil : text
    }

    /// A string descriptor's payload (after bLength/bDescriptorType), checked.
    private mutating func descriptor(index: UInt8, language: UInt16) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 255)
        do {
            let n = try LibUSB.controlIn(handle, requestType: 0x80, request: 6,  // GET_DESCRIPTOR
                                         value: 0x0300 | UInt16(index), index: language,
                                         buffer: &buffer, timeoutMilliseconds: timeoutMilliseconds)
            return StringDescriptor.payload(of: Array(buffer.prefix(n)))
        } catch {
            if error == .timeout || error == .noDevice || error == .io { gaveUp = error }
            return nil
        }
    }
}

import DevifCore

/// The OS string descriptor (index 0xEE): a vendor code or nil, never a trap.
func fuzz(_ bytes: [UInt8]) {
    if let code = MSOS10.vendorCode(fromOSStringDescriptor: bytes) {
        precondition(bytes.count >= 18 && bytes[16] == code, "vendor code \(code) not at offset 16")
    }
}

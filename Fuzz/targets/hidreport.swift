import DevifCore

/// HID report descriptor.
func fuzz(_ bytes: [UInt8]) {
    let d = HIDReportDescriptor.parse(bytes)
    do {
        _ = try HIDReportDescriptor(validating: bytes)
        precondition(d.issues.isEmpty, "validating accepted what parse reported: \(d.issues)")
    } catch {
        precondition(d.issues.first == error, "validating threw \(error), parse reported \(d.issues)")
    }
}

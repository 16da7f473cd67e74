import DevifCore

/// BOS descriptor + MS OS 2.0 platform capability; the set picked for a few
/// Windows versions. Checks the parse/validate agreement (the first issue is
/// what validation throws).
func fuzz(_ bytes: [UInt8]) {
    let bos = BOSDescriptor.parse(bytes)
    for v: UInt32 in [0, 0x0603_0000, 0x0A00_0000, .max] { _ = bos.msOS20DescriptorSet(forWindowsVersion: v) }
    do {
        _ = try BOSDescriptor(validating: bytes)
        precondition(bos.issues.isEmpty, "validating accepted what parse reported: \(bos.issues)")
    } catch {
        precondition(bos.issues.first == error, "validating threw \(error), parse reported \(bos.issues)")
    }
}

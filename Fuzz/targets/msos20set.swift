import DevifCore

/// MS OS 2.0 descriptor set, alone and checked against a set info built from
/// the first input bytes (so the fuzzer also explores disagreeing headers).
func fuzz(_ bytes: [UInt8]) {
    let set = MSOS20DescriptorSet.parse(bytes)
    _ = set.declaredInterfaceGUIDs
    if bytes.count >= 4 {
        let info = BOSDescriptor.MSOS20SetInfo(windowsVersion: 0x0603_0000,
                                               descriptorSetTotalLength: UInt16(bytes[0]) | UInt16(bytes[1]) << 8,
                                               vendorCode: bytes[2], altEnumCode: bytes[3])
        _ = MSOS20DescriptorSet.parse(bytes.dropFirst(4), for: info)
    }
    do {
        _ = try MSOS20DescriptorSet(validating: bytes)
        precondition(set.issues.isEmpty, "validating accepted what parse reported: \(set.issues)")
    } catch {
        precondition(set.issues.first == error, "validating threw \(error), parse reported \(set.issues)")
    }
}

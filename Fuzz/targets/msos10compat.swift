import DevifCore

/// MS OS 1.0 Extended Compat ID descriptor.
func fuzz(_ bytes: [UInt8]) {
    let d = MSOS10.ExtendedCompatID.parse(bytes)
    for f in d.functions { _ = (f.id.compatibleID, f.id.subCompatibleID) }
    precondition(d.functions.count <= max(0, (bytes.count - 16) / 24) + 1, "more functions than bytes allow")
    do {
        _ = try MSOS10.ExtendedCompatID(validating: bytes)
        precondition(d.issues.isEmpty, "validating accepted what parse reported: \(d.issues)")
    } catch {
        precondition(d.issues.first == error, "validating threw \(error), parse reported \(d.issues)")
    }
}

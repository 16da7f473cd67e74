import DevifCore

/// MS OS 1.0 Extended Properties descriptor (the first byte picks the
/// interface number, 0xFF meaning the whole device).
func fuzz(_ bytes: [UInt8]) {
    guard let first = bytes.first else { return }
    let interface: UInt8? = first == 0xFF ? nil : first
    let body = bytes.dropFirst()
    let d = MSOS10.ExtendedProperties.parse(body, interfaceNumber: interface)
    for g in d.declaredInterfaceGUIDs { precondition(g.interfaceNumber == interface, "GUID on the wrong interface") }
    do {
        _ = try MSOS10.ExtendedProperties(validating: body, interfaceNumber: interface)
        precondition(d.issues.isEmpty, "validating accepted what parse reported: \(d.issues)")
    } catch {
        precondition(d.issues.first == error, "validating threw \(error), parse reported \(d.issues)")
    }
}

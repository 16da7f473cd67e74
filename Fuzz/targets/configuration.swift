// Compiled with Sources/DevifUSB/Assembler/{DescriptorParser,RawDevice}.swift
// (pure Swift; the no-udevd path parses sysfs `descriptors` with them).

/// Device descriptor + configuration descriptors, as sysfs gives them.
func fuzz(_ bytes: [UInt8]) {
    guard let device = try? DescriptorParser.parse(bytes, bus: 1, ports: [1], address: 2) else { return }
    for c in device.configurations { for i in c.interfaces { precondition(i.descriptor.endpoints.count <= 255) } }
    _ = device.stringIndexes
}

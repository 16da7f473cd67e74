// Pure helpers of DevifUSB: raw descriptor parsing (the no-udevd path),
// string descriptor decoding, node names. No device, no libusb context.
@testable import DevifUSB
@testable import DevifLinux
import DevifCore
import DevifHID
import Testing

/// A device descriptor: 1209:0a01, bcdDevice 0x0102, class 0/0/0, strings 1,2,3.
private func deviceDescriptor(configurations: UInt8) -> [UInt8] {
    [18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x09, 0x12, 0x01, 0x0a, 0x02, 0x01, 1, 2, 3, configurations]
}

/// A configuration with one vendor interface (string 4) and bulk 0x81/0x02,
/// plus a class-specific descriptor the parser must skip.
private func configuration(value: UInt8, wTotalLength: UInt16? = nil) -> [UInt8] {
    var body: [UInt8] = [9, 4, 0, 0, 2, 0xff, 0, 0, 4]
    body += [5, 0x24, 1, 2, 3]  // class-specific: skipped
    body += [7, 5, 0x81, 2, 0x00, 0x02, 0]
    body += [7, 5, 0x02, 2, 0x00, 0x02, 0]
    let total = wTotalLength ?? UInt16(9 + body.count)
    return [9, 2, UInt8(total & 0xff), UInt8(total >> 8), 1, value, 0, 0x80, 50] + body
}

@Suite struct DescriptorParserTests {
    @Test func parsesDeviceAndConfigurations() throws {
        let bytes = deviceDescriptor(configurations: 2) + configuration(value: 1) + configuration(value: 2)
        let d = try DescriptorParser.parse(bytes, bus: 3, ports: [1, 4], address: 7)
        #expect(d.vendorID == 0x1209 && d.productID == 0x0a01 && d.bcdDevice == 0x0102)
        #expect(d.manufacturerIndex == 1 && d.productIndex == 2 && d.serialIndex == 3)
        #expect(d.configurations.map(\.value) == [1, 2])
        #expect(d.problems.isEmpty)
        let i = try #require(d.configurations.first?.interfaces.first)
        #expect(i.descriptor.interfaceClass == ClassTriple(0xff, 0, 0))
        #expect(i.stringIndex == 4)
        #expect(i.descriptor.endpoints.map(\.address) == [0x81, 0x02])
        #expect(i.descriptor.endpoints.map(\.maxPacketSize) == [512, 512])
        #expect(d.portChain.description == "3-1.4")
    }

    @Test func ignoresALyingTotalLength() throws {
        // sysfs cuts configurations to what was read; wTotalLength may claim more.
        let bytes = deviceDescriptor(configurations: 2) + configuration(value: 1, wTotalLength: 4000)
            + configuration(value: 2, wTotalLength: 9)
        let d = try DescriptorParser.parse(bytes, bus: 1, ports: [1], address: 2)
        #expect(d.configurations.map(\.value) == [1, 2])
        #expect(d.configurations.map(\.interfaces.count) == [1, 1])
    }

    @Test func survivesTruncationAndZeroLengths() throws {
        var bytes = deviceDescriptor(configurations: 1) + configuration(value: 1)
        bytes.removeLast(3)  // the last endpoint is cut short
        let cut = try DescriptorParser.parse(bytes, bus: 1, ports: [1], address: 2)
        #expect(cut.configurations.first?.interfaces.first?.descriptor.endpoints.count == 1)

        var zero = deviceDescriptor(configurations: 1) + configuration(value: 1)
        zero[18 + 9] = 0  // interface descriptor bLength 0: nothing after it can be read
        let z = try DescriptorParser.parse(zero, bus: 1, ports: [1], address: 2)
        #expect(z.configurations.first?.interfaces.isEmpty == true)

        // Missing configurations are named, not invented.
        let missing = try DescriptorParser.parse(deviceDescriptor(configurations: 3) + configuration(value: 1),
                                                 bus: 1, ports: [1], address: 2)
        #expect(missing.configurations.count == 1)
        #expect(!missing.problems.isEmpty)
    }

    @Test func rejectsWhatIsNotADeviceDescriptor() {
        #expect(throws: DescriptorParser.Failure.shortDeviceDescriptor(5)) {
            try DescriptorParser.parse([18, 1, 0, 2, 0], bus: 1, ports: [], address: 1)
        }
        var bytes = deviceDescriptor(configurations: 0)
        bytes[1] = 2
        #expect(throws: DescriptorParser.Failure.notADeviceDescriptor) {
            try DescriptorParser.parse(bytes, bus: 1, ports: [], address: 1)
        }
    }

    @Test func endpointsBeyondTheDeclaredCountAreIgnored() throws {
        var c = configuration(value: 1)
        c[9 + 4] = 1  // bNumEndpoints 1 although two follow
        let d = try DescriptorParser.parse(deviceDescriptor(configurations: 1) + c, bus: 1, ports: [1], address: 2)
        #expect(d.configurations.first?.interfaces.first?.descriptor.endpoints.map(\.address) == [0x81])
    }
}

@Suite struct StringDescriptorTests {
    @Test func payloadChecksLengthAndType() {
        #expect(StringDescriptor.payload(of: [6, 3, 0x41, 0, 0x42, 0]) == [0x41, 0, 0x42, 0])
        // bLength larger than received: only what arrived.
        #expect(StringDescriptor.payload(of: [200, 3, 0x41, 0]) == [0x41, 0])
        #expect(StringDescriptor.payload(of: [4, 2, 0x41, 0]) == nil)
        #expect(StringDescriptor.payload(of: [1, 3]) == nil)
        #expect(StringDescriptor.payload(of: [3]) == nil)
    }

    @Test func decodesUTF16LEWithReplacement() {
        #expect(StringDescriptor.decode(utf16le: [0x41, 0, 0xe9, 0]) == "Aé")
        // An unpaired high surrogate becomes U+FFFD; an odd trailing byte is dropped.
        #expect(StringDescriptor.decode(utf16le: [0x00, 0xd8, 0x41, 0x00, 0x42]) == "\u{FFFD}A")
        // A surrogate pair is one scalar.
        #expect(StringDescriptor.decode(utf16le: [0x3d, 0xd8, 0x00, 0xde]) == "😀")
        // Trailing NUL padding goes, inner NULs stay (the consumer escapes).
        #expect(StringDescriptor.decode(utf16le: [0x41, 0, 0, 0, 0x42, 0, 0, 0, 0, 0]) == "A\u{0}B")
    }
}

@Suite struct NamingTests {
    @Test func devnodeIsZeroPadded() {
        #expect(USBAssembler.devnode(bus: 1, address: 5) == "/dev/bus/usb/001/005")
        #expect(USBAssembler.devnode(bus: 255, address: 127) == "/dev/bus/usb/255/127")
    }

    @Test func errorsCompareByCodeAndSayWhatToDo() {
        let e = USBError(libusbCode: -3, operation: "libusb_open")
        #expect(e == .access)
        #expect(e != .timeout)
        #expect(e.description.hasPrefix("libusb_open: permission denied"))
        #expect(e.description.contains("udev rule"))
        #expect(USBError(libusbCode: -1234, operation: "x") == .other)
    }
}

// The single-node path of `rules names`: a node's number and sysfs directory.
@Suite struct SingleNodeTests {
    @Test func splitsDeviceNumbersAsGlibcDoes() {
        #expect(CharacterDeviceNode.split(UInt64(189 << 8 | 1)) == (189, 1))
        // A minor over 255 lives in two places of dev_t.
        let dev = (UInt64(189) << 8) | (UInt64(300) & 0xff) | ((UInt64(300) & ~UInt64(0xff)) << 12)
        #expect(CharacterDeviceNode.split(dev) == (189, 300))
        let big = (UInt64(0x1234) & 0xfff) << 8 | (UInt64(0x1234) & ~UInt64(0xfff)) << 32 | 7
        #expect(CharacterDeviceNode.split(big) == (0x1234, 7))
    }

    @Test func usbfsMinorsFollowBusAndDevnum() {
        #expect(USBSource.usbfsMinor(bus: 1, devnum: 1) == 0)
        #expect(USBSource.usbfsMinor(bus: 1, devnum: 2) == 1)
        #expect(USBSource.usbfsMinor(bus: 3, devnum: 7) == UInt32(262))  // (3-1)*128 + (7-1)
        #expect(USBSource.usbfsMinor(bus: 0, devnum: 1) == nil)
        #expect(USBSource.usbfsMinor(bus: 1, devnum: 129) == nil)
    }

    @Test func resolvesACharacterNodeThroughSysfs() throws {
        // /dev/null is 1:3 on every Linux: its sysfs directory is mem/null.
        let null = try CharacterDeviceNode.lookUp("/dev/null").get()
        #expect(null.major == 1 && null.minor == 3)
        #expect(null.directory.hasSuffix("/mem/null") && null.directory.hasPrefix("/sys/devices/"))
    }

    @Test func refusesNodesThatAreNotTheirKind() {
        guard case .failure(let usb) = USBSource.snapshot(ofNode: "/dev/null") else { Issue.record("/dev/null as USB"); return }
        #expect(usb.description.contains("not a USB device node"))
        guard case .failure(let hid) = HIDSource.snapshot(ofNode: "/dev/null") else { Issue.record("/dev/null as hidraw"); return }
        #expect(hid.description.contains("not a hidraw node"))
        guard case .failure(let missing) = USBSource.snapshot(ofNode: "/dev/bus/usb/255/128") else {
            Issue.record("a missing node resolved"); return
        }
        #expect(missing.description.contains("ENOENT"))
        guard case .failure(let directory) = HIDSource.snapshot(ofNode: "/dev") else { Issue.record("/dev as hidraw"); return }
        #expect(directory.description.contains("not a character device"))
        #expect((try? RawDevice(sysfsDevpath: "/devices/no-such-device/1-1")) == nil)
    }
}

// Resolving sysfs links with one readlink (Sysfs.canonical).
@Suite struct SysfsLinkTests {
    @Test func normalizesLexically() {
        #expect(Sysfs.normalized("/sys/bus/usb/devices/../../../devices/platform/x/usb1/1-1") == "/sys/devices/platform/x/usb1/1-1")
        #expect(Sysfs.normalized("/a/./b//c/") == "/a/b/c")
        #expect(Sysfs.normalized("/../../x") == "/x")
    }

    @Test func knowsWhichFoldersHoldLinksIntoDevices() {
        #expect(Sysfs.isLinkFolder("/sys/bus/usb/devices"))
        #expect(Sysfs.isLinkFolder("/sys/dev/char"))
        #expect(Sysfs.isLinkFolder("/sys/class/hidraw"))
        #expect(Sysfs.isLinkFolder("/sys/devices/platform/dummy_hcd.0/usb1/1-1"))
        #expect(!Sysfs.isLinkFolder("/sys/devices/platform/../../class/x"))
        #expect(!Sysfs.isLinkFolder("/sys/class/hidraw/hidraw0"))  // itself a link
        #expect(!Sysfs.isLinkFolder("/sys/bus/usb"))
        #expect(!Sysfs.isLinkFolder("/tmp/sys/bus/usb/devices"))
    }

    @Test func resolvesAsRealpathDoes() throws {
        // Links every Linux has: a char device's number and a net class entry.
        for link in ["/sys/dev/char/1:3", "/sys/class/net/lo", "/sys/class/mem/null", "/sys/devices/virtual/mem/null/subsystem"] {
            let real = try Syscalls.realpath(link)
            #expect(Sysfs.canonical(link) == real, "\(link)")
        }
        #expect(Sysfs.canonical("/sys/dev/char/no-such") == nil)
    }

    @Test func aShortReadEndsTheFile() throws {
        // A sysfs attribute in one read; a limit still caps it.
        let text = try #require(Sysfs.string("/sys/dev/char/1:3/dev", limit: 64))
        #expect(text == "1:3")
        #expect(try Sysfs.read("/sys/dev/char/1:3/uevent", limit: 5).count == 5)
    }

    @Test func readsThroughAnOpenDirectory() throws {
        let null = try #require(SysfsDirectory("/sys/dev/char/1:3"))  // a link, followed
        #expect(null.string("dev") == "1:3")
        #expect(null.exists("uevent") && !null.exists("no-such-file"))
        #expect(null.string("no-such-file") == nil && null.decimal("dev") == nil)
        #expect(null.string("subsystem/null/dev") == "1:3")  // a relative path
        #expect(null.canonicalPath == (try Syscalls.realpath("/sys/dev/char/1:3")))
        #expect(SysfsDirectory("/sys/dev/char/1:3/dev") == nil)  // a file
        #expect(SysfsDirectory("/sys/no-such-directory") == nil)
    }
}

import DevifCore
import Testing

@Suite("UdevRules and LinkLayout")
struct UdevRulesTests {
    static let program = "/usr/local/bin/devif-usb"
    static let probe = try! GUID(parsing: "{0123abcd-4567-89ab-cdef-0123456789ab}")

    static func catalog() -> ClassCatalog {
        var c = ClassCatalog.builtIn
        c.add(ClassDefinition(interfaceClass: InterfaceClass(guid: probe, name: "my-probe", description: "probe\nwith a newline",
                                                             origin: .file(path: "/etc/devif/classes.d/50.conf", line: 1))))
        return c
    }

    @Test("the rules import the names, link every slot with string_escape=none only around them, and grant as asked")
    func generatesRules() throws {
        let options = UdevRulesOptions(program: Self.program, classFolders: ["/etc/devif/classes.d"], grants: [
            UdevAccessGrant(classGUID: Self.probe, access: .uaccess),
            UdevAccessGrant(classGUID: WellKnownClass.hid.guid, access: .group("plugdev")),
        ])
        let text = try UdevRules.generate(catalog: Self.catalog(), options: options)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains("IMPORT{program}=\"/usr/local/bin/devif-usb rules names --link-root devif --classes-dir /etc/devif/classes.d $devnode\""))
        let symlinks = lines.filter { $0.contains("SYMLINK+=") }
        #expect(symlinks.count == UdevRules.linkSlots)
        #expect(symlinks.first == "ENV{DEVIF_LINK_0}==\"?*\", OPTIONS+=\"string_escape=none\", SYMLINK+=\"$env{DEVIF_LINK_0}\"")
        // udev 252 applies string_escape=none only to SYMLINK+= on the same line.
        #expect(symlinks.allSatisfy { $0.contains("OPTIONS+=\"string_escape=none\", SYMLINK+=") })
        #expect(lines.filter { $0.contains("string_escape") }.count == UdevRules.linkSlots, "string_escape outside the link lines")
        #expect(lines.contains("ENV{DEVIF_CLASSES}==\"*,0123abcd-4567-89ab-cdef-0123456789ab,*\", TAG+=\"uaccess\""))
        #expect(lines.contains("ENV{DEVIF_CLASSES}==\"*,4d1e55b2-f16f-11cf-88cb-001111000030,*\", GROUP=\"plugdev\", MODE=\"0660\""))
        #expect(!text.contains("0666"))
        #expect(lines.first == "ACTION==\"remove\", GOTO=\"devif_end\"" || lines.contains("ACTION==\"remove\", GOTO=\"devif_end\""))
        #expect(lines.last == "LABEL=\"devif_end\"")
        // Every GOTO has its LABEL.
        for line in lines where line.contains("GOTO=\"") {
            let label = line.components(separatedBy: "GOTO=\"")[1].prefix { $0 != "\"" }
            #expect(lines.contains("LABEL=\"\(label)\""), "no LABEL for \(line)")
        }
        // Header comments name each class's folder; a newline in a description cannot break out.
        #expect(lines.contains { $0.hasPrefix("#   my-probe  {0123abcd-4567-89ab-cdef-0123456789ab}  uaccess") })
        #expect(lines.allSatisfy { $0.isEmpty || $0.hasPrefix("#") || $0.contains("=") })
    }

    @Test("no class folders means built-in classes only in the names command")
    func builtinOnly() throws {
        let text = try UdevRules.generate(catalog: .builtIn, options: UdevRulesOptions(program: Self.program, classFolders: []))
        #expect(text.contains("rules names --link-root devif --builtin-classes-only $devnode"))
        let rules = text.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(!rules.contains { $0.contains("TAG+=") || $0.contains("GROUP=") }, "no grant was asked for")
    }

    @Test("options that cannot go into a rule safely are refused with what to change",
          arguments: [
            UdevRulesOptions(program: "devif-usb", classFolders: []),
            UdevRulesOptions(program: "/opt/my tools/devif-usb", classFolders: []),
            UdevRulesOptions(program: "/opt/$x/devif-usb", classFolders: []),
            UdevRulesOptions(program: "/usr/bin/devif-usb", classFolders: ["/etc/devif/%c"]),
            UdevRulesOptions(program: "/usr/bin/devif-usb", classFolders: ["relative/classes.d"]),
            UdevRulesOptions(program: "/usr/bin/devif-usb", classFolders: [], linkRoot: "../etc"),
            UdevRulesOptions(program: "/usr/bin/devif-usb", classFolders: [], linkRoot: "devif/"),
            UdevRulesOptions(program: "/usr/bin/devif-usb", classFolders: [], fileName: "70-devif.conf"),
            UdevRulesOptions(program: "/usr/bin/devif-usb", classFolders: [],
                             grants: [UdevAccessGrant(classGUID: WellKnownClass.hid.guid, access: .group("plug dev\""))]),
            UdevRulesOptions(program: "/usr/bin/devif-usb", classFolders: [],
                             grants: [UdevAccessGrant(classGUID: WellKnownClass.hid.guid, access: .uaccess)],
                             fileName: "80-devif.rules"),
          ])
    func refusesUnsafeOptions(_ options: UdevRulesOptions) {
        #expect(throws: UdevRulesError.self) { try UdevRules.generate(catalog: .builtIn, options: options) }
    }

    @Test("a uaccess file must sort before 73-seat-late.rules; the message says so")
    func seatLateOrder() throws {
        #expect(UdevRules.sortsBeforeSeatLate("70-devif.rules"))
        #expect(UdevRules.sortsBeforeSeatLate("72-z.rules"))
        #expect(!UdevRules.sortsBeforeSeatLate("73-seat-late.rules"))
        #expect(!UdevRules.sortsBeforeSeatLate("99-devif.rules"))
        let options = UdevRulesOptions(program: Self.program, classFolders: [],
                                       grants: [UdevAccessGrant(classGUID: WellKnownClass.hid.guid, access: .uaccess)],
                                       fileName: "99-devif.rules")
        do {
            _ = try UdevRules.generate(catalog: .builtIn, options: options)
            Issue.record("99-devif.rules with uaccess was accepted")
        } catch {
            #expect(error.description.contains("73-seat-late.rules"))
        }
        // Group grants do not depend on the order.
        let group = UdevRulesOptions(program: Self.program, classFolders: [],
                                     grants: [UdevAccessGrant(classGUID: WellKnownClass.hid.guid, access: .group("plugdev"))],
                                     fileName: "99-devif.rules")
        #expect(throws: Never.self) { try UdevRules.generate(catalog: .builtIn, options: group) }
    }

    @Test("import properties: every slot printed, unsafe and duplicate paths skipped, overflow counted")
    func importProperties() {
        let guid = WellKnownClass.usbDevice.guid
        let (text, dropped) = UdevRules.importProperties(
            linkRoot: "devif",
            links: [("usb-device", "usb#a#b#{x}"), ("usb-device", "usb#a#b#{x}"), ("usb-device", "../x"),
                    ("..", "y"), ("usb-device", "a/b")],
            classes: [guid, guid])
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        #expect(lines.count == UdevRules.linkSlots + 1)
        #expect(lines[0] == "DEVIF_LINK_0=devif/usb-device/usb#a#b#{x}")
        #expect(lines[1] == "DEVIF_LINK_1=")
        #expect(lines.last == "DEVIF_CLASSES=,a5dcbf10-6530-11d2-901f-00c04fb951ed,")
        #expect(dropped == 0)
        let many = (0..<40).map { ("c", "usb#\($0)") }
        #expect(UdevRules.importProperties(linkRoot: "devif", links: many, classes: []).dropped == 8)
    }

    @Test("import properties of one node's snapshots: each instance's links and classes in the classifier's order")
    func importPropertiesOfSnapshots() {
        func interface(_ n: UInt8, _ c: UInt8) -> USBInterface { USBInterface(number: n, interfaceClass: ClassTriple(c, 0, 0)) }
        let composite = DeviceSnapshot(
            kind: .usb, portChain: PortChain(bus: 1, ports: [2]), deviceAddress: 3, vendorID: 0x1209, productID: 0x0002,
            bcdDevice: 0x0100, deviceClass: ClassTriple(0, 0, 0), serialNumber: "SER-1",
            configurations: [USBConfiguration(value: 1, interfaces: [interface(0, 3), interface(1, 0xff)])],
            activeConfigurationValue: 1, firmwareGUIDs: [FirmwareGUID(guid: Self.probe, interfaceNumber: 1, source: .msOS20)],
            devnode: "/dev/bus/usb/001/003")
        let (text, dropped) = UdevRules.importProperties(linkRoot: "devif", snapshots: [composite], catalog: Self.catalog())
        let lines = text.split(separator: "\n").map(String.init)
        #expect(dropped == 0)
        #expect(lines[0] == "DEVIF_LINK_0=devif/usb-device/usb#vid_1209&pid_0002#SER-1#{a5dcbf10-6530-11d2-901f-00c04fb951ed}")
        #expect(lines[1] == "DEVIF_LINK_1=devif/my-probe/usb#vid_1209&pid_0002&mi_01#SER-1#{0123abcd-4567-89ab-cdef-0123456789ab}")
        #expect(lines[2] == "DEVIF_LINK_2=")
        #expect(lines.last == "DEVIF_CLASSES=,0123abcd-4567-89ab-cdef-0123456789ab,a5dcbf10-6530-11d2-901f-00c04fb951ed,")
        // The same as the pairs the classifier's memberships give.
        var links: [(folder: String, link: String)] = [], classes: [GUID] = []
        for i in Classifier(catalog: Self.catalog()).classify(composite) {
            for m in i.memberships {
                links.append((LinkLayout.folderName(for: m.interfaceClass.guid, in: Self.catalog()), m.symbolicLink.rawValue))
                classes.append(m.interfaceClass.guid)
            }
        }
        #expect(text == UdevRules.importProperties(linkRoot: "devif", links: links, classes: classes).text)
        // No snapshot (the node is not present): every slot empty.
        #expect(UdevRules.importProperties(linkRoot: "devif", snapshots: [], catalog: .builtIn).text
                == (0..<UdevRules.linkSlots).map { "DEVIF_LINK_\($0)=\n" }.joined() + "DEVIF_CLASSES=,\n")
    }

    @Test("a fix rule for one device: USB by ids, hidraw by the HID device's kernel name")
    func accessRules() {
        #expect(UdevRules.accessRule(kind: .usb, vendorID: 0x1209, productID: 0x0c01, busType: .usb, access: .uaccess)
                == "SUBSYSTEM==\"usb\", ENV{DEVTYPE}==\"usb_device\", ATTR{idVendor}==\"1209\", ATTR{idProduct}==\"0c01\", TAG+=\"uaccess\"")
        #expect(UdevRules.accessRule(kind: .hid, vendorID: 0x1209, productID: 0xabcd, busType: .usb, access: .group("plugdev"))
                == "SUBSYSTEM==\"hidraw\", KERNELS==\"0003:1209:ABCD.*\", GROUP=\"plugdev\", MODE=\"0660\"")
        #expect(UdevRules.accessRule(kind: .hid, vendorID: 0x1209, productID: 1, busType: BusType(rawValue: 6), access: .uaccess)
                .contains("KERNELS==\"0006:1209:0001.*\""))
    }

    @Test("class folders: the class's name, or its GUID when it has no name of its own")
    func folderNames() {
        var catalog = Self.catalog()
        #expect(LinkLayout.folderName(for: WellKnownClass.usbDevice.guid, in: catalog) == "usb-device")
        #expect(LinkLayout.folderName(for: Self.probe, in: catalog) == "my-probe")
        let declared = try! GUID(parsing: "{88888888-2222-3333-4444-555555555555}")
        #expect(LinkLayout.folderName(for: declared, in: catalog) == "{88888888-2222-3333-4444-555555555555}")
        // Two classes with one name: the later keeps it, the earlier gets its GUID.
        let clash = try! GUID(parsing: "{99999999-2222-3333-4444-555555555555}")
        catalog.add(ClassDefinition(interfaceClass: InterfaceClass(guid: clash, name: "my-probe", description: "",
                                                                   origin: .builtIn)))
        #expect(LinkLayout.folderName(for: clash, in: catalog) == "my-probe")
        #expect(LinkLayout.folderName(for: Self.probe, in: catalog) == Self.probe.description)
    }

    @Test("safe components: one name, never . or .., no / or NUL, at most 255 bytes")
    func safeComponents() {
        for bad in ["", ".", "..", "a/b", "/", "a\u{0}b", String(repeating: "x", count: 256)] {
            #expect(!LinkLayout.isSafeComponent(bad), "\(bad.debugDescription) accepted")
        }
        for good in ["usb-device", "...", ".hidden", String(repeating: "x", count: 255)] {
            #expect(LinkLayout.isSafeComponent(good))
        }
        #expect(LinkLayout.relativePath(folder: "hid", link: "..") == nil)
        #expect(LinkLayout.relativePath(folder: "hid", link: "hid#x") == "hid/hid#x")
    }

    @Test("hostile serials (../../x, a/b, 255 characters) give links that are one safe component",
          arguments: ["../../x", "a/b", "..", "/", String(repeating: "../", count: 85), String(repeating: "é/", count: 127) + "x"])
    func hostileSerials(_ serial: String) {
        for kind in [DeviceKind.usb, .hid] {
            let identity = InstanceIdentity(kind: kind, vendorID: 0x1209, productID: 1, interfaceNumber: 0,
                                            serialNumber: serial, location: "../" + serial)
            for includeLocation in [false, true] {
                let link = identity.symbolicLink(for: WellKnownClass.hid.guid, includeLocation: includeLocation).rawValue
                #expect(LinkLayout.isSafeComponent(link))
                #expect(LinkLayout.relativePath(folder: "hid", link: link) == "hid/" + link)
            }
        }
    }
}

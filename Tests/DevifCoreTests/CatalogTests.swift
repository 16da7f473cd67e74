import Foundation
import Testing
@testable import DevifCore

@Suite struct CatalogTests {
    static let probeGUID = try! GUID(parsing: "{0123abcd-4567-89ab-cdef-0123456789ab}")

    @Test func parsesClassesRulesAndOrigins() throws {
        let text = """
            # a comment
            [class {0123ABCD-4567-89ab-cdef-0123456789ab}]
            name = my-probe
            description = My probe's bulk interface (#1)
            match = vid=1209 pid=0x1 interface=1
              match =   usb-class=ff   usb-subclass=42 usb-protocol=01\t

            [ class 11111111-2222-3333-4444-555555555555 ]
            name = keypad
            match = kind=hid vid=1209
            match = hid-usage-page=ff00 hid-usage=1 hid-bus=uhid firmware-guid
            match = device-class=ef firmware-guid={22222222-2222-3333-4444-555555555555}
            """
        let parsed = CatalogParser.parse(text, file: "/x/10-probe.conf")
        #expect(parsed.diagnostics == [])
        try #require(parsed.definitions.count == 2)
        let probe = parsed.definitions[0]
        #expect(probe.guid == Self.probeGUID)
        #expect(probe.interfaceClass.name == "my-probe")
        #expect(probe.interfaceClass.description == "My probe's bulk interface (#1)")
        #expect(probe.interfaceClass.origin == .file(path: "/x/10-probe.conf", line: 2))
        #expect(probe.rules.map(\.description) == ["vid=1209 pid=0001 interface=01",
                                                   "usb-class=ff usb-subclass=42 usb-protocol=01"])
        #expect(probe.rules.map(\.target) == [.usbInterface, .usbInterface])
        let keypad = parsed.definitions[1]
        #expect(keypad.interfaceClass.origin == .file(path: "/x/10-probe.conf", line: 8))
        #expect(keypad.rules.map(\.description) == [
            "kind=hid vid=1209", "hid-usage-page=ff00 hid-usage=0001 hid-bus=virtual firmware-guid",
            "device-class=ef firmware-guid={22222222-2222-3333-4444-555555555555}",
        ])
        #expect(keypad.rules.map(\.target) == [.hid, .hid, .usbDevice])
    }

    @Test func badLinesAreReportedAndTheRestLoads() throws {
        let text = """
            name = orphan
            [class {0123abcd-4567-89ab-cdef-0123456789ab}]
            name = good-one
            match = vid=1209 pid=12345
            match = vid=1209 color=blue
            match =
            match = vid=1209 vid=1208
            match = usb-class=ff hid-usage=1
            match = kind=usb hid-bus=usb
            match = firmware-guid={nope}
            match = pid=0002
            colour = red
            just some words
            name = bad name!
            [class {not-a-guid}]
            name = skipped
            match = vid=1
            [class {33333333-2222-3333-4444-555555555555}]
            description = no name here
            """
        let parsed = CatalogParser.parse(text, file: "f.conf")
        let lines = parsed.diagnostics.map { $0.line ?? 0 }
        #expect(lines == [1, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 18], "\(parsed.diagnostics)")
        #expect(parsed.diagnostics.allSatisfy { $0.file == "f.conf" })
        let messages = parsed.diagnostics.map(\.message)
        #expect(messages[0].contains("outside a class section"))
        #expect(messages[1].contains("pid=1-4 hex digits") && messages[1].contains("12345"))
        #expect(messages[2].contains("unknown criterion") && messages[2].contains("color"))
        #expect(messages[3].contains("at least one criterion"))
        #expect(messages[4].contains("appears twice"))
        #expect(messages[5].contains("cannot have both"))
        #expect(messages[6].contains("kind=usb"))
        #expect(messages[7].contains("firmware-guid={xxxxxxxx"))
        #expect(messages[8].contains("unknown key") && messages[8].contains("expected name, description or match"))
        #expect(messages[9].contains("expected 'key = value'"))
        #expect(messages[10].contains("expected a name"))
        #expect(messages[11].contains("[class {xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}]"))
        #expect(messages[12].contains("no 'name"))
        // The good parts loaded: the valid match line survives, the bad ones are dropped whole.
        try #require(parsed.definitions.count == 2)
        #expect(parsed.definitions[0].interfaceClass.name == "good-one")
        #expect(parsed.definitions[0].rules.map(\.description) == ["pid=0002"])
        #expect(parsed.definitions[1].interfaceClass.name == "{33333333-2222-3333-4444-555555555555}")
        #expect(parsed.definitions[1].interfaceClass.description == "no name here")
    }

    @Test func crlfInvalidUTF8AndHostileTextInMessages() {
        var bytes = Array("[class {0123abcd-4567-89ab-cdef-0123456789ab}]\r\nname = crlf\r\n".utf8)
        bytes += [0x6e, 0x61, 0x6d, 0x65, 0xff, 0x0a] // "name\xff\n"
        bytes += Array("\u{1b}]0;pwned\u{7}\n".utf8)
        let parsed = CatalogParser.parse(bytes, file: "c.conf")
        #expect(parsed.definitions.first?.interfaceClass.name == "crlf")
        #expect(parsed.diagnostics.map(\.line) == [3, 4])
        #expect(parsed.diagnostics[0].message.contains("not valid UTF-8"))
        #expect(!parsed.diagnostics[1].message.contains("\u{1b}"))
        #expect(parsed.diagnostics[1].description.hasPrefix("c.conf:4: "))
    }

    @Test func foldersLoadInOrderAndLaterReplacesEarlier() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("devif-catalog-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let system = root.appendingPathComponent("system"), user = root.appendingPathComponent("user")
        try FileManager.default.createDirectory(at: system, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: user, withIntermediateDirectories: true)
        func write(_ folder: URL, _ name: String, _ text: String) throws {
            try Data(text.utf8).write(to: folder.appendingPathComponent(name))
        }
        let probe = "{0123abcd-4567-89ab-cdef-0123456789ab}"
        try write(system, "20-b.conf", "[class \(probe)]\nname = probe-b\nmatch = vid=2\n")
        try write(system, "10-a.conf", "[class \(probe)]\nname = probe-a\nmatch = vid=1\nbogus\n")
        try write(system, "ignored.txt", "[class \(probe)]\nname = not-read\n")
        try write(system, ".hidden.conf", "[class \(probe)]\nname = not-read\n")
        try write(user, "50-hid.conf", "[class {4d1e55b2-f16f-11cf-88cb-001111000030}]\nname = human-input\n")
        try write(user, "60-other.conf", "[class {11111111-2222-3333-4444-555555555555}]\nname = probe-b\n")

        let result = ClassCatalog.load(folders: [system.path, root.appendingPathComponent("missing").path, user.path])
        #expect(result.files.map { URL(fileURLWithPath: $0).lastPathComponent }
                == ["10-a.conf", "20-b.conf", "50-hid.conf", "60-other.conf"])
        let probeClass = try #require(result.catalog[Self.probeGUID])
        #expect(probeClass.interfaceClass.name == "probe-b")
        #expect(probeClass.rules.map(\.description) == ["vid=0002"])
        #expect(probeClass.interfaceClass.origin == .file(path: system.appendingPathComponent("20-b.conf").path, line: 1))
        // A user file renamed the built-in HID class.
        #expect(result.catalog.lookup("human-input")?.guid == WellKnownClass.hid.guid)
        #expect(result.catalog.lookup("hid") == nil)
        #expect(result.catalog.lookup("usb-device")?.origin == .builtIn)
        // The bad line and the name clash are reported, with file and line.
        #expect(result.diagnostics.count == 2, "\(result.diagnostics)")
        #expect(result.diagnostics.first?.file == system.appendingPathComponent("10-a.conf").path)
        #expect(result.diagnostics.first?.line == 4)
        #expect(result.diagnostics.last?.message.contains("also the name of") == true)
        #expect(result.catalog.lookup("probe-b")?.guid.description == "{11111111-2222-3333-4444-555555555555}")
        // A GUID nobody defines is still a class: firmware-declared.
        #expect(result.catalog.lookup("{99999999-2222-3333-4444-555555555555}")?.name == "firmware-declared")
    }

    @Test func defaultFolders() {
        #expect(ClassCatalog.defaultFolders(environment: ["HOME": "/home/u"])
                == ["/etc/devif/classes.d", "/home/u/.config/devif/classes.d"])
        #expect(ClassCatalog.defaultFolders(environment: ["HOME": "/home/u", "XDG_CONFIG_HOME": "/cfg"])
                == ["/etc/devif/classes.d", "/cfg/devif/classes.d"])
        #expect(ClassCatalog.defaultFolders(environment: ["HOME": "/home/u", "XDG_CONFIG_HOME": "relative"])
                == ["/etc/devif/classes.d", "/home/u/.config/devif/classes.d"])
        #expect(ClassCatalog.defaultFolders(environment: ["DEVIF_CLASSES_PATH": "/a::/b", "HOME": "/home/u"])
                == ["/a", "/b"])
        #expect(ClassCatalog.defaultFolders(environment: ["DEVIF_CLASSES_PATH": ""]) == [])
        #expect(ClassCatalog.load(environment: ["DEVIF_CLASSES_PATH": ""]).catalog == .builtIn)
    }

    @Test func unreadableAndOversizedFilesAreDiagnosed() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("devif-catalog-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try Data(repeating: UInt8(ascii: "#"), count: ClassCatalog.maximumFileSize + 1)
            .write(to: root.appendingPathComponent("big.conf"))
        let notAFolder = root.appendingPathComponent("big.conf").path
        let result = ClassCatalog.load(folders: [root.path, notAFolder])
        #expect(result.diagnostics.count == 2)
        #expect(result.diagnostics[0].message.contains("larger than"))
        #expect(result.diagnostics[0].line == nil)
        #expect(result.diagnostics[1].message.contains("not a folder"))
        #expect(result.catalog == .builtIn)
    }
}

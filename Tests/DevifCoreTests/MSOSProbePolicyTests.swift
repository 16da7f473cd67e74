// The MS OS 1.0 probe policy: the catalog's [ms-os-1.0] section, and the
// remembered answers per model in the registry's facts (both stores).
import DevifCore
import DevifRegistrySQLite
import Foundation
import Testing

@Suite struct MSOS10ProbeCatalogTests {
    @Test func probeLinesAreParsedAndClassSectionsStillWork() throws {
        let parsed = CatalogParser.parse("""
            [ms-os-1.0]
            probe = vid=1209 pid=0001
            probe = vid=0x0483 pid=5740 bcd-device=0200
            probe = vid=cafe

            [class {0123abcd-4567-89ab-cdef-0123456789ab}]
            name = after-probes
            match = vid=1209

            [ms-os-1.0]
            probe = any
            """, file: "t.conf")
        #expect(parsed.diagnostics.isEmpty, "\(parsed.diagnostics)")
        #expect(parsed.msOS10Probes.map(\.description) == ["vid=1209 pid=0001", "vid=0483 pid=5740 bcd-device=0200",
                                                           "vid=cafe", "any"])
        #expect(parsed.definitions.map(\.interfaceClass.name) == ["after-probes"])
        #expect(parsed.definitions.first?.rules.map(\.description) == ["vid=1209"])
    }

    @Test func allowsMatchesEveryGivenCriterion() {
        let rule = MSOS10ProbeRule(vendorID: 0x0483, productID: 0x5740, bcdDevice: 0x0200)
        #expect(rule.allows(vendorID: 0x0483, productID: 0x5740, bcdDevice: 0x0200))
        #expect(!rule.allows(vendorID: 0x0483, productID: 0x5740, bcdDevice: 0x0201))
        #expect(!rule.allows(vendorID: 0x0483, productID: 0x5740, bcdDevice: nil))
        #expect(!rule.allows(vendorID: 0x0484, productID: 0x5740, bcdDevice: 0x0200))
        let vendor = MSOS10ProbeRule(vendorID: 0x1209)
        #expect(vendor.allows(vendorID: 0x1209, productID: 0xffff, bcdDevice: nil))
        #expect(MSOS10ProbeRule.any.allows(vendorID: 1, productID: 2, bcdDevice: 3))
        #expect(![MSOS10ProbeRule]().allowMSOS10Probe(vendorID: 0x1209, productID: 1, bcdDevice: 1),
                "no probe line: nobody is asked")
    }

    @Test func badProbeLinesAreDiagnosedAndSkippedWhole() {
        let parsed = CatalogParser.parse("""
            [ms-os-1.0]
            probe = vid=1209 pid=zz
            probe = vid=1209 vid=1209
            probe = usb-class=ff
            probe =
            probe = pid
            match = vid=1209
            probe = vid=12345
            probe = vid=1209 pid=0002
            """, file: "bad.conf")
        #expect(parsed.msOS10Probes.map(\.description) == ["vid=1209 pid=0002"], "only the good line")
        #expect(parsed.diagnostics.map(\.line) == [2, 3, 4, 5, 6, 7, 8])
        #expect(parsed.diagnostics.allSatisfy { $0.file == "bad.conf" })
        #expect(parsed.diagnostics[0].message.contains("pid=1-4 hex digits"))
        #expect(parsed.diagnostics[1].message.contains("appears twice"))
        #expect(parsed.diagnostics[5].message.contains("unknown key \"match\" in [ms-os-1.0]"))
    }

    @Test func probeRulesAddUpAcrossFilesAndLoadReportsThem() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devif-msos-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[ms-os-1.0]\nprobe = vid=1209\n".write(toFile: dir + "/10-a.conf", atomically: true, encoding: .utf8)
        try "[ms-os-1.0]\nprobe = vid=0483 pid=5740\n".write(toFile: dir + "/20-b.conf", atomically: true, encoding: .utf8)
        let loaded = ClassCatalog.load(folders: [dir])
        #expect(loaded.diagnostics.isEmpty)
        #expect(loaded.catalog.msOS10Probes.map(\.description) == ["vid=1209", "vid=0483 pid=5740"])
        #expect(loaded.catalog.allowsMSOS10Probe(vendorID: 0x0483, productID: 0x5740, bcdDevice: 0x100))
        #expect(!loaded.catalog.allowsMSOS10Probe(vendorID: 0x0483, productID: 0x5741, bcdDevice: 0x100))
        #expect(!ClassCatalog.builtIn.allowsMSOS10Probe(vendorID: 0x1209, productID: 1, bcdDevice: nil))
    }
}

@Suite struct MSOS10ProbeMemoryTests {
    @Test(arguments: RegistryStoreKind.allCases)
    func answersAreRememberedPerModel(kind: RegistryStoreKind) throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let memory = MSOS10ProbeMemory(store: try kind.makeStore(in: folder))
        #expect(try memory.answer(vendorID: 0x1209, productID: 1, bcdDevice: 0x100) == nil)
        try memory.remember(.present(vendorCode: 0xcd), vendorID: 0x1209, productID: 1, bcdDevice: 0x100)
        try memory.remember(.absent, vendorID: 0x1209, productID: 1, bcdDevice: 0x200)
        #expect(try memory.answer(vendorID: 0x1209, productID: 1, bcdDevice: 0x100) == .present(vendorCode: 0xcd))
        #expect(try memory.answer(vendorID: 0x1209, productID: 1, bcdDevice: 0x200) == .absent)
        #expect(try memory.answer(vendorID: 0x1209, productID: 2, bcdDevice: 0x100) == nil, "another model")
        #expect(try memory.store.fact(forKey: "msos10/1209:0001:0100") == "present vendor-code=cd")
        try memory.remember(nil, vendorID: 0x1209, productID: 1, bcdDevice: 0x100)
        #expect(try memory.answer(vendorID: 0x1209, productID: 1, bcdDevice: 0x100) == nil, "forgotten")
    }

    @Test func theAnswerSurvivesReopeningTheFile() throws {
        let folder = try RegistryTestFolder(); defer { folder.cleanUp() }
        let path = folder.file("registry.sqlite")
        try MSOS10ProbeMemory(store: SQLiteRegistryStore(path: path))
            .remember(.present(vendorCode: 0x20), vendorID: 0x0483, productID: 0x5740, bcdDevice: 0x0200)
        let reopened = MSOS10ProbeMemory(store: try SQLiteRegistryStore(path: path))
        #expect(try reopened.answer(vendorID: 0x0483, productID: 0x5740, bcdDevice: 0x0200) == .present(vendorCode: 0x20))
    }

    @Test func storedFormsRoundTripAndForeignValuesAreIgnored() {
        for answer in [MSOS10ProbeAnswer.absent, .present(vendorCode: 0), .present(vendorCode: 0xff)] {
            #expect(MSOS10ProbeAnswer(stored: answer.description) == answer)
        }
        for text in ["", "present", "present vendor-code=", "present vendor-code=1", "present vendor-code=xyz",
                     "present vendor-code=123", "ABSENT", "absent "] {
            #expect(MSOS10ProbeAnswer(stored: text) == nil, "\(text.debugDescription)")
        }
    }
}

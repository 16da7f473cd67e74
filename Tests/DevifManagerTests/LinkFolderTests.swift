import Devif
import DevifCore
import Foundation
import Testing

/// A fresh folder under the temporary directory: `base/links` is the link
/// folder, so anything created beside it (an escape) shows up in `base`.
private func makeBase() throws -> String {
    let base = NSTemporaryDirectory() + "devif-linkfolder-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    return base
}

private func target(_ path: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: path) }

/// Every entry below `root`, as relative paths (no following of links).
private func tree(_ root: String) -> [String] {
    var out: [String] = []
    let fm = FileManager.default
    for top in (try? fm.contentsOfDirectory(atPath: root)) ?? [] {
        out.append(top)
        var isDir: ObjCBool = false
        if target(root + "/" + top) == nil, fm.fileExists(atPath: root + "/" + top, isDirectory: &isDir), isDir.boolValue {
            for inner in (try? fm.contentsOfDirectory(atPath: root + "/" + top)) ?? [] { out.append(top + "/" + inner) }
        }
    }
    return out.sorted()
}

/// A folder over a started manager, recording its changes.
private struct Fixture {
    let h: Harness
    let usb: FakeSource
    let base: String
    var root: String { base + "/links" }
    let changes = Recorder<LinkFolder.Change>()
    let folder: LinkFolder

    init(catalog: ClassCatalog = .builtIn, prepare: (String) throws -> Void = { _ in }) throws {
        usb = FakeSource("usb")
        h = try Harness([usb], catalog: catalog)
        usb.enumerated()
        base = try makeBase()
        try FileManager.default.createDirectory(atPath: base + "/links", withIntermediateDirectories: true)
        try prepare(base + "/links")
        let changes = changes
        folder = try LinkFolder(root: base + "/links", manager: h.manager) { changes.append($0) }
    }

    func created(_ n: Int) async -> Bool {
        await changes.wait { items, _ in items.filter { if case .created = $0 { true } else { false } }.count >= n }
    }

    func removed(_ n: Int) async -> Bool {
        await changes.wait { items, _ in items.filter { if case .removed = $0 { true } else { false } }.count >= n }
    }

    func refused(_ n: Int) async -> Bool {
        await changes.wait { items, _ in items.filter { if case .refused = $0 { true } else { false } }.count >= n }
    }

    func cleanUp() {
        folder.stop()
        try? FileManager.default.removeItem(atPath: base)
    }
}

@Suite("LinkFolder")
struct LinkFolderTests {
    static let link = "usb-device/usb#vid_1209&pid_0001#SER#\(usbDeviceGUIDText)"

    @Test("a present device gets its link at start, a new one on arrival, and removal removes it")
    func arrivalAndRemoval() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        f.usb.arrive(usbSnapshot(address: 4))
        #expect(await f.h.barrier(f.usb))
        f.folder.start()
        #expect(await f.created(1))
        #expect(target(f.root + "/" + Self.link) == "/dev/bus/usb/001/004")
        f.usb.arrive(hidKeyboardSnapshot(node: 3))
        #expect(await f.created(3), "hid and keyboard links: \(f.changes.items)")
        #expect(target(f.root + "/keyboard/hid#vid_046d&pid_c31c&mi_00#KB1#{884b96c3-56ef-11d1-bc8c-00a0c91405dd}") == "/dev/hidraw3")
        #expect(target(f.root + "/hid/hid#vid_046d&pid_c31c&mi_00#KB1#{4d1e55b2-f16f-11cf-88cb-001111000030}") == "/dev/hidraw3")
        f.usb.remove(usbSnapshot(address: 4))
        #expect(await f.removed(1))
        #expect(target(f.root + "/" + Self.link) == nil)
        #expect(f.folder.links.count == 2)
        // The manifest lists exactly the links held.
        let manifest = try String(contentsOfFile: f.root + "/" + LinkFolder.manifestName, encoding: .utf8)
        #expect(manifest.split(separator: "\n").filter { !$0.hasPrefix("#") }.count == 2)
        f.folder.stop(removingLinks: true)
        #expect(tree(f.root).allSatisfy { !$0.contains("#") }, "links left after stop: \(tree(f.root))")
    }

    @Test("hostile serials (../../x, a/b, 255 characters) stay single names inside the folder")
    func hostileSerials() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        f.folder.start()
        let serials = ["../../x", "a/b", "..", String(repeating: "../", count: 85), String(repeating: "é", count: 255)]
        for (n, serial) in serials.enumerated() {
            f.usb.arrive(usbSnapshot(pid: UInt16(n + 1), serial: serial, ports: [UInt8(n + 1)], address: UInt8(n + 10)))
        }
        #expect(await f.created(serials.count), "changes: \(f.changes.items)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.base) == ["links"], "something escaped the folder")
        let entries = tree(f.root).filter { !$0.hasPrefix(".") }
        #expect(entries.filter { !$0.contains("/") } == ["usb-device"])
        let links = entries.filter { $0.contains("/") }
        #expect(links.count == serials.count)
        for path in links {
            let name = String(path.dropFirst("usb-device/".count))
            #expect(LinkLayout.isSafeComponent(name) && name.utf8.count <= 255)
            #expect(target(f.root + "/" + path)?.hasPrefix("/dev/bus/usb/") == true)
        }
    }

    @Test("never replaces or removes a file or link it did not make")
    func leavesForeignEntriesAlone() async throws {
        let f = try Fixture { root in
            try FileManager.default.createDirectory(atPath: root + "/usb-device", withIntermediateDirectories: true)
            try "mine\n".write(toFile: root + "/" + Self.link, atomically: false, encoding: .utf8)
        }
        defer { f.cleanUp() }
        f.folder.start()
        f.usb.arrive(usbSnapshot(address: 4))
        #expect(await f.refused(1))
        #expect(try String(contentsOfFile: f.root + "/" + Self.link, encoding: .utf8) == "mine\n")
        // A foreign symlink with the very name and target is still not ours.
        try FileManager.default.removeItem(atPath: f.root + "/" + Self.link)
        try FileManager.default.createSymbolicLink(atPath: f.root + "/" + Self.link, withDestinationPath: "/dev/bus/usb/001/004")
        f.usb.remove(usbSnapshot(address: 4))
        #expect(await f.h.barrier(f.usb))
        f.folder.stop(removingLinks: true)
        #expect(target(f.root + "/" + Self.link) == "/dev/bus/usb/001/004", "a link it did not make was removed")
        #expect(f.folder.links.isEmpty)
    }

    @Test("at start, stale links of its own are removed; manifest lines for entries that changed are not acted on")
    func cleansStaleLinks() async throws {
        let stale = "usb-device/usb#vid_dead&pid_beef#OLD#\(usbDeviceGUIDText)"
        let replaced = "usb-device/usb#vid_dead&pid_beef#REPLACED#\(usbDeviceGUIDText)"
        let f = try Fixture { root in
            let fm = FileManager.default
            try fm.createDirectory(atPath: root + "/usb-device", withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: root + "/" + stale, withDestinationPath: "/dev/hidraw9")
            try "someone else's\n".write(toFile: root + "/" + replaced, atomically: false, encoding: .utf8)
            try "# old\n\(stale)\t/dev/hidraw9\n\(replaced)\t/dev/hidraw8\n../escape\t/dev/null\nusb-device/x\trelative\n"
                .write(toFile: root + "/" + LinkFolder.manifestName, atomically: true, encoding: .utf8)
        }
        defer { f.cleanUp() }
        #expect(Set(f.folder.links.keys) == [stale, replaced], "malformed manifest lines were read")
        f.folder.start()
        #expect(await f.removed(1))
        #expect(await f.refused(1))
        #expect(target(f.root + "/" + stale) == nil)
        #expect(try String(contentsOfFile: f.root + "/" + replaced, encoding: .utf8) == "someone else's\n")
        #expect(f.folder.links.isEmpty)
    }

    @Test("a second device with the same serial gets the library's serial@port name")
    func twins() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        f.folder.start()
        f.usb.arrive(usbSnapshot(ports: [1], address: 4))
        f.usb.arrive(usbSnapshot(ports: [2], address: 5))
        #expect(await f.created(2))
        #expect(target(f.root + "/" + Self.link) == "/dev/bus/usb/001/004")
        #expect(target(f.root + "/usb-device/usb#vid_1209&pid_0001#SER@1-2#\(usbDeviceGUIDText)") == "/dev/bus/usb/001/005")
    }

    @Test("one watcher per folder; a root that is a symbolic link is refused")
    func refusals() throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        #expect(throws: LinkFolderError.self) { _ = try LinkFolder(root: f.root, manager: f.h.manager) }
        try FileManager.default.createSymbolicLink(atPath: f.base + "/alias", withDestinationPath: f.root)
        do {
            _ = try LinkFolder(root: f.base + "/alias", manager: f.h.manager)
            Issue.record("a symbolic-link root was accepted")
        } catch {
            #expect(error.description.contains("symbolic link"))
        }
    }
}

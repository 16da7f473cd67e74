// The manager's registry opens on a thread of its own while the sources
// start: what it records still reaches the file, and a file that cannot be
// opened leaves a registry in memory and a notice.
import DevifCore
import DevifRegistrySQLite
import Foundation
import Testing
@testable import Devif

private func temporaryFolder() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("devif-opening-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func manager(registryPath: String, source: FakeSource) throws -> DeviceManager {
    var options = DeviceManager.Options()
    options.sources = [source]
    options.registryPath = registryPath
    options.catalog = .builtIn
    return try DeviceManager(options: options)
}

@Suite("The manager's registry, opened behind its start")
struct RegistryOpeningTests {
    @Test("an arrival published while the registry opens is recorded in the file")
    func arrivalsReachTheFile() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/registry.sqlite"
        let usb = FakeSource("usb")
        let m = try manager(registryPath: path, source: usb)
        let notices = Recorder<Notice>()
        m.onNotice { notices.append($0) }
        m.start()
        // Pushed at once: the registry may not be open yet.
        usb.arrive(usbSnapshot(serial: "OPENING-1"))
        usb.enumerated()
        #expect(await m.waitUntilEnumerated(timeout: .seconds(10)))
        #expect(m.registry.store is SQLiteRegistryStore)
        #expect(m.registry.present().count == 1, "recorded before the end of enumeration is told")
        m.stop()
        #expect(await notices.wait(count: 0).allSatisfy { $0.kind != .registry })

        let reopened = try InstanceRegistry(store: SQLiteRegistryStore(path: path))
        #expect(reopened.present().map(\.serialNumber) == ["OPENING-1"])
    }

    @Test("a manager let go is freed, stopped or not, with its registry in a file or in memory",
          arguments: [false, true])
    func aManagerLetGoIsFreed(inMemory: Bool) throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        weak var stopped: DeviceManager?
        weak var notStopped: DeviceManager?
        // The registry too: nothing the manager made may hold itself (the
        // pipeline reaches the registry's opening, which reported to it).
        weak var stoppedRegistry: InstanceRegistry?
        weak var notStoppedRegistry: InstanceRegistry?
        do {
            var options = DeviceManager.Options()
            options.sources = []
            options.catalog = .builtIn
            options.registryPath = folder + "/registry.sqlite"
            options.inMemoryRegistry = inMemory
            let first = try DeviceManager(options: options)
            first.start()
            _ = first.registry
            first.stop()
            stopped = first
            stoppedRegistry = first.registry
            let second = try DeviceManager(options: options)
            second.onNotice { _ in }
            notStopped = second
            notStoppedRegistry = second.registry
        }
        #expect(stopped == nil)
        #expect(notStopped == nil)
        #expect(stoppedRegistry == nil)
        #expect(notStoppedRegistry == nil)
    }

    @Test("a registry that cannot be opened leaves one in memory and a notice; devices are still reported")
    func unavailableRegistry() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Its folder would be a file: it cannot be made.
        FileManager.default.createFile(atPath: folder + "/file", contents: Data())
        let usb = FakeSource("usb")
        let m = try manager(registryPath: folder + "/file/registry.sqlite", source: usb)
        defer { m.stop() }
        let notices = Recorder<Notice>()
        m.onNotice { notices.append($0) }
        let watch = m.watch(InterfaceFilter())
        m.start()
        usb.arrive(usbSnapshot(serial: "OPENING-2"))
        usb.enumerated()
        #expect(await m.waitUntilEnumerated(timeout: .seconds(10)))
        #expect(await notices.wait { items, _ in
            items.contains { $0.kind == .registry && $0.message.contains("remembering instances in memory only") }
        })
        #expect(m.registry.store is InMemoryRegistryStore)
        #expect(m.registry.present().count == 1)
        #expect(m.interfaces(InterfaceFilter()).map(\.serialNumber) == ["OPENING-2"])
        withExtendedLifetime(watch) {}
    }
}

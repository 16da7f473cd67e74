// The pipeline's registry writes: a burst of events is one transaction.
import DevifCore
import Foundation
import Synchronization
import Testing
@testable import Devif

/// Counts the registry transactions the pipeline makes.
private final class CountingStore: RegistryStore, Sendable {
    let inner = InMemoryRegistryStore()
    let commits = Atomic<Int>(0)
    func load() throws(RegistryError) -> RegistryContents { try inner.load() }
    func commit(_ intents: [RegistryIntent], time: Date) throws(RegistryError) -> [RegistryChange] {
        commits.add(1, ordering: .relaxed)
        return try inner.commit(intents, time: time)
    }
    func changes(since: RegistrySequence, limit: Int?) throws(RegistryError) -> [RegistryChange] { try inner.changes(since: since, limit: limit) }
    func fact(forKey key: String) throws(RegistryError) -> String? { try inner.fact(forKey: key) }
    func setFact(_ value: String?, forKey key: String, time: Date) throws(RegistryError) { try inner.setFact(value, forKey: key, time: time) }
    func facts(withPrefix prefix: String) throws(RegistryError) -> [String: String] { try inner.facts(withPrefix: prefix) }
}

@Suite("Pipeline's registry commits") struct PipelineCommitTests {
    @Test("a burst of events is one registry transaction; a lone event is committed at once; notices follow the registry")
    func groupCommit() async throws {
        let store = CountingStore()
        let registry = try InstanceRegistry(store: store)
        let pipeline = Pipeline(classifier: Classifier(catalog: .builtIn), registry: RegistryOpening(ready: registry), sourceNames: ["usb"], watchCapacity: 4096)
        defer { pipeline.stop() }
        let noticed = Recorder<String>()
        pipeline.onNotice { noticed.append($0.description) }
        // Queued before the thread starts: one burst.
        let burst = 200
        for k in 0..<burst {
            pipeline.submit(source: "usb", .arrived(usbSnapshot(serial: "B\(k)", bus: UInt8(k / 100 + 1), ports: [UInt8(k % 100 + 1)], address: UInt8(k % 100 + 2))))
        }
        pipeline.submit(source: "usb", .notice(Notice(.degraded, "after the burst")))
        pipeline.start()
        #expect(await noticed.wait { items, _ in items.contains("usb: after the burst") }, "the notice after the burst")
        #expect(registry.present().count == burst, "every arrival of the burst is recorded before the notice is given")
        let afterBurst = store.commits.load(ordering: .relaxed)
        #expect(afterBurst <= 2, "\(afterBurst) registry transactions for a burst of \(burst) arrivals")

        // A lone event: committed without waiting for another.
        let lone = usbSnapshot(serial: "LONE", bus: 9, ports: [9], address: 99)
        pipeline.submit(source: "usb", .arrived(lone))
        let clock = ContinuousClock(), deadline = clock.now + .seconds(5)
        // Nothing else happens to trigger a commit, so there is no event to await: poll, bounded.
        while registry.present().count == burst, clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(registry.present().count == burst + 1, "the lone arrival reached the registry within 5 s")
        #expect(store.commits.load(ordering: .relaxed) == afterBurst + 1)
    }
}

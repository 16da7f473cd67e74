import Devif
import Logging
import Synchronization
import Testing

/// Keeps every record a logger sends it (a swift-log handler for tests).
struct CapturingLogHandler: LogHandler {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }
    let records: Recorder<Record>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?,
             source: String, file: String, function: String, line: UInt) {
        let merged = self.metadata.merging(metadata ?? [:]) { $1 }
        records.append(Record(level: level, message: message.description,
                              metadata: merged.mapValues { "\($0)" }))
    }
}

@Suite("Logging")
struct LoggingTests {
    @Test("the manager logs notices at .notice and arrivals, removals and handles at .debug through the logger given")
    func diagnosticsGoThroughTheApplicationsLogger() async throws {
        let records = Recorder<CapturingLogHandler.Record>()
        var options = DeviceManager.Options()
        let usb = FakeSource("usb")
        options.sources = [usb]
        options.inMemoryRegistry = true
        options.catalog = .builtIn
        options.logger = Logger(label: "test") { _ in CapturingLogHandler(records: records) }
        let manager = try DeviceManager(options: options)
        defer { manager.stop() }
        manager.start()
        let snapshot = usbSnapshot()
        usb.arrive(snapshot)
        usb.push(.notice(Notice(.degraded, "something worth a line")))
        usb.remove(snapshot)
        let link = "usb#vid_1209&pid_0001#SER#\(usbDeviceGUIDText)"
        let seen = await records.wait { items, _ in items.contains { $0.message == "removal" } }
        #expect(seen, "the removal was logged")
        let all = await records.wait(count: 0)
        let arrival = all.first { $0.message == "arrival" }
        #expect(arrival?.level == .debug)
        #expect(arrival?.metadata["link"] == link)
        #expect(arrival?.metadata["devnode"] == snapshot.devnode)
        #expect(all.first { $0.message == "removal" }?.metadata["link"] == link)
        let notice = all.first { $0.message == "something worth a line" }
        #expect(notice?.level == .notice)
        #expect(notice?.metadata["source"] == "usb" && notice?.metadata["kind"] == "degraded")
    }

    @Test("by default nothing is logged anywhere: the default logger discards")
    func defaultLoggerDiscards() throws {
        let manager = try DeviceManager(options: {
            var o = DeviceManager.Options()
            o.sources = []
            o.inMemoryRegistry = true
            return o
        }())
        defer { manager.stop() }
        // swift-log's own discarding handler: what it is given goes nowhere.
        #expect(manager.logger.handler is SwiftLogNoOpLogHandler)
        #expect(manager.logger.label == "devif")
    }
}

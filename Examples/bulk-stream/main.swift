// bulk-stream: reads a bulk IN endpoint as fast as the device sends (the lab's
// configfs SourceSink gadget sends without end) with several transfers in
// flight, and prints the rate.
//
//   bulk-stream LINK [--seconds S] [--json]
import ArgumentParser
import Devif
import DevifSupport
import Foundation

@main
struct BulkStream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulk-stream",
        abstract: "Reads a USB bulk IN endpoint continuously (e.g. from a SourceSink device) and prints MB/s.",
        discussion: """
            Keeps --transfers transfers of --transfer-size bytes in flight on the first bulk \
            IN endpoint for --seconds seconds. MB/s is 10^6 bytes per second.

            Exit status: 0 done; 65 unknown link; 69 the device was removed or is not \
            plugged in; 77 no permission.
            """)

    @Argument(help: "The device's symbolic link (see `devif-usb list`).")
    var link: String

    @Option(help: "How long to read.")
    var seconds: Double = 5

    @Option(help: "Bytes per transfer.")
    var transferSize = 16384

    @Option(help: "Transfers in flight.")
    var transfers = 8

    @OptionGroup var options: ExampleOptions

    func validate() throws {
        guard seconds > 0, seconds <= 86400 else { throw ValidationError("--seconds must be in (0, 86400]") }
        guard (1...(1 << 24)).contains(transferSize) else { throw ValidationError("--transfer-size must be 1...16777216") }
        guard (1...256).contains(transfers) else { throw ValidationError("--transfers must be 1...256") }
    }

    struct Summary: Codable {
        let link: String
        let bytes: UInt64
        let seconds: Double
        let megabytesPerSecond: Double
        let transferSize: Int
        let transfers: Int
    }

    func run() async throws {
        let manager = try await startManager("bulk-stream", options)
        let handle: USBHandle
        do { handle = try manager.openUSB(link) } catch { throw exitStatus("bulk-stream", error) }
        defer { handle.close() }
        guard let inp = handle.endpoints.first(where: { $0.isIn && $0.kind == .bulk }) else {
            complain("bulk-stream", "\(link) has no bulk IN endpoint")
            throw ExampleExit.usage
        }
        let clock = ContinuousClock()
        let end = clock.now + .milliseconds(Int(seconds * 1000))
        var bytes: UInt64 = 0
        let start = clock.now
        do {
            let stream = try handle.inStream(endpoint: inp.address, transferSize: transferSize, transfers: transfers,
                                             timeout: .seconds(5))
            defer { stream.stop() }
            while clock.now < end {
                guard let chunk = try stream.next(timeout: .seconds(5)) else { break }
                bytes += UInt64(chunk.count)
            }
        } catch {
            throw exitStatus("bulk-stream", error)
        }
        let elapsed = DevifSupport.seconds(clock.now - start)
        let rate = Double(bytes) / elapsed / 1e6
        if options.json {
            printJSON(Summary(link: link, bytes: bytes, seconds: (elapsed * 1e4).rounded() / 1e4,
                              megabytesPerSecond: (rate * 100).rounded() / 100,
                              transferSize: transferSize, transfers: transfers))
        } else {
            print("stream: \(bytes) bytes in \(String(format: "%.3f", elapsed)) s, \(String(format: "%.2f", rate)) MB/s (\(transfers) x \(transferSize) bytes in flight)")
        }
    }
}

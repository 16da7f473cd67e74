// hid-echo: sends output reports to a HID instance that echoes them (the lab's
// HID gadgets and uhid devices do), reads each echo back, verifies it, and
// prints round-trip times.
//
//   hid-echo LINK [--count N] [--size B] [--json]
import ArgumentParser
import Devif
import DevifSupport
import Foundation

@main
struct HIDEcho: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hid-echo",
        abstract: "Round trips through a HID device that echoes output reports as input reports.",
        discussion: """
            Each round trip writes one output report (report ID 0 and --size bytes of a \
            counter pattern), reads the next input report and checks that it carries the \
            same bytes. Prints the number of round trips, the median and 99th percentile \
            round-trip time in microseconds, and the errors.

            Exit status: 0 all echoes verified; 1 a mismatch or a missing echo; 65 unknown \
            link; 69 the device was removed or is not plugged in; 77 no permission.
            """)

    @Argument(help: "The HID instance's symbolic link (see `devif-usb list --class hid`).")
    var link: String

    @Option(help: "Round trips to make.")
    var count = 1000

    @Option(help: "Bytes per report, without the report ID (the device's report length).")
    var size = 64

    @Option(help: "How long to wait for each echo, in milliseconds.")
    var timeoutMs = 1000

    @OptionGroup var options: ExampleOptions

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard (1...4095).contains(size) else { throw ValidationError("--size must be 1...4095 bytes") }
        guard timeoutMs >= 1 else { throw ValidationError("--timeout-ms must be at least 1") }
    }

    struct Summary: Codable {
        let link: String
        let roundTrips: Int
        let size: Int
        let errors: Int
        let medianMicroseconds: Double
        let p99Microseconds: Double
        let maxMicroseconds: Double
    }

    func run() async throws {
        let manager = try await startManager("hid-echo", options)
        let handle: HIDHandle
        do { handle = try manager.openHID(link) } catch { throw exitStatus("hid-echo", error) }
        defer { handle.close() }

        var times: [Double] = []
        times.reserveCapacity(count)
        var errors = 0
        var firstError: String?
        let clock = ContinuousClock()
        for i in 0..<count {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: i &+ $0) }
            let start = clock.now
            do {
                try handle.write(outputReport: [0] + payload)
                let echo = try handle.read(timeout: .milliseconds(timeoutMs))
                times.append(microseconds(clock.now - start))
                if echo != payload {
                    errors += 1
                    firstError = firstError ?? "round trip \(i): sent \(payload.count) bytes, got \(echo.count) that differ"
                }
            } catch .timeout {
                errors += 1
                firstError = firstError ?? "round trip \(i): no echo within \(timeoutMs) ms"
            } catch {
                throw exitStatus("hid-echo", error)
            }
        }
        let stats = Percentiles(times)
        let summary = Summary(link: link, roundTrips: count, size: size, errors: errors,
                              medianMicroseconds: stats.median.rounded(), p99Microseconds: stats.p99.rounded(),
                              maxMicroseconds: stats.max.rounded())
        if options.json {
            printJSON(summary)
        } else {
            print("round trips: \(count) x \(size) bytes, errors: \(errors)")
            print("round trip: median \(Int(stats.median)) us, p99 \(Int(stats.p99)) us, max \(Int(stats.max)) us")
        }
        if let firstError { complain("hid-echo", firstError) }
        if errors > 0 { throw ExampleExit.verificationFailed }
    }
}

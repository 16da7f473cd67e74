// bulk-loopback: sends random data through a Loopback device (the lab's
// configfs Loopback gadget echoes every bulk OUT transfer on its bulk IN
// endpoint) and checks that every byte comes back, in order.
//
//   bulk-loopback LINK [--bytes N] [--json]
import ArgumentParser
import Devif
import DevifSupport
import Foundation

@main
struct BulkLoopback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulk-loopback",
        abstract: "Sends random data out through a USB Loopback device and verifies it comes back.",
        discussion: """
            The device echoes each of its buffers (--chunk bytes: Loopback's bulk_buflen, \
            4096 by default). Data goes out in writes of up to 16 buffers; the last piece, \
            when shorter than a buffer, ends with a zero-length packet if its length is a \
            multiple of the packet size, so the device sees where it ends. A stream with several transfers in flight reads \
            the data back. Prints MB/s (10^6 bytes per second, out and back) and mismatches.

            Exit status: 0 verified; 1 a mismatch or missing data; 65 unknown link; 69 the \
            device was removed or is not plugged in; 77 no permission.
            """)

    @Argument(help: "The Loopback device's symbolic link (see `devif-usb list`).")
    var link: String

    @Option(help: "Bytes to send (and receive).")
    var bytes = 1 << 20

    @Option(help: "The device's buffer size: the largest chunk per transfer.")
    var chunk = 4096

    @Option(help: "Seed of the random data.")
    var seed: UInt64 = 1

    @OptionGroup var options: ExampleOptions

    func validate() throws {
        guard bytes >= 1 else { throw ValidationError("--bytes must be at least 1") }
        guard (1...(1 << 20)).contains(chunk) else { throw ValidationError("--chunk must be 1...1048576") }
    }

    struct Summary: Codable {
        let link: String
        let bytes: Int
        let chunk: Int
        let mismatches: Int
        let seconds: Double
        let megabytesPerSecond: Double
    }

    func run() async throws {
        let manager = try await startManager("bulk-loopback", options)
        let handle: USBHandle
        do { handle = try manager.openUSB(link) } catch { throw exitStatus("bulk-loopback", error) }
        defer { handle.close() }
        guard let out = handle.endpoints.first(where: { !$0.isIn && $0.kind == .bulk }),
              let inp = handle.endpoints.first(where: { $0.isIn && $0.kind == .bulk }) else {
            complain("bulk-loopback", "\(link) has no bulk IN and OUT endpoint pair; is it a Loopback device?")
            throw ExampleExit.usage
        }
        var generator = ByteGenerator(seed: seed)
        let data = generator.bytes(bytes)
        let clock = ContinuousClock()
        let start = clock.now
        var mismatches = 0
        var received = 0
        do {
            // Reading runs ahead with several transfers in flight; each
            // device chunk ends one transfer (short packet, ZLP or full).
            let stream = try handle.inStream(endpoint: inp.address, transferSize: chunk, transfers: 4,
                                             timeout: .seconds(5))
            defer { stream.stop() }
            let (chunk, outAddress) = (chunk, out.address)
            let writer = Task { () async -> Result<Void, HandleError> in
                var offset = 0
                while offset < data.count {
                    let n = loopbackWriteSize(remaining: data.count - offset, chunk: chunk)
                    do throws(HandleError) {
                        try await handle.write(endpoint: outAddress, Array(data[offset..<(offset + n)]),
                                               zeroLengthPacket: n < chunk)
                    } catch { return .failure(error) }
                    offset += n
                }
                return .success(())
            }
            while received < data.count {
                guard let piece = try await stream.next() else { break }
                let expected = data[received..<min(data.count, received + piece.count)]
                if piece.count > expected.count || !piece.elementsEqual(expected) {
                    mismatches += 1
                }
                received += piece.count
            }
            try await writer.value.get()
        } catch .timeout {
            complain("bulk-loopback", "\(link): no data for 5 s after \(received) of \(bytes) bytes")
            mismatches += 1
        } catch {
            throw exitStatus("bulk-loopback", error)
        }
        let elapsed = seconds(clock.now - start)
        if received != bytes { mismatches += 1 }
        let rate = Double(bytes) / elapsed / 1e6
        if options.json {
            printJSON(Summary(link: link, bytes: bytes, chunk: chunk, mismatches: mismatches,
                              seconds: (elapsed * 1e4).rounded() / 1e4, megabytesPerSecond: (rate * 100).rounded() / 100))
        } else {
            print("loopback: \(bytes) bytes in \(String(format: "%.3f", elapsed)) s, \(String(format: "%.2f", rate)) MB/s, mismatches: \(mismatches)")
        }
        if mismatches > 0 { throw ExampleExit.verificationFailed }
    }
}

/// How much to write next: whole device buffers (up to 16 in one transfer,
/// each fills one device request), or the short remainder.
func loopbackWriteSize(remaining: Int, chunk: Int) -> Int {
    remaining < chunk ? remaining : min(remaining / chunk, 16) * chunk
}

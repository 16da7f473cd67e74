// The OUT stream (issue 20, item 4) on a real Loopback gadget: what goes
// out comes back on the IN endpoint, so order, completeness and the
// zero-length end marker are seen from the device's side; with nobody
// reading IN, the gadget stops taking data and the writer must wait
// (backpressure) until an unplug ends it with deviceRemoved. The echo is read
// as an AsyncSequence of chunks that lend their transfers' buffers.
import Devif
import DevifCore
import Foundation
import SeededRandom

func registerOutStreamTests(_ r: inout LabRunner) {
    r.add("io streams: an OUT stream written in random-size pieces (copied, or filled in place blocking or async) reaches a loopback gadget whole and in order (read back as an AsyncSequence of lent chunks); ending on a packet boundary it sends a zero-length packet (the IN side gets an empty transfer), otherwise none") {
        let f = try await ManagerFixture()
        defer { f.stop() }
        try Devlab.run(["create", "ko1", "loopback", "--vid", "1209", "--pid", "0d50", "--serial", "LAB-KO-1"])
        let link = "usb#vid_1209&pid_0d50#LAB-KO-1#\(LabClasses.vendorBulk)"
        try Devlab.plug("ko1")
        _ = try await f.next(1, "the loopback's arrival", where: { $0.event == .arrival && $0.interface.symbolicLink.rawValue == link })
        let h = try f.manager.openUSB(link)
        defer { h.close() }
        let out = try h.endpoints.first { !$0.isIn && $0.kind == .bulk }.orFail("no bulk OUT endpoint")
        let inp = try h.endpoints.first { $0.isIn && $0.kind == .bulk }.orFail("no bulk IN endpoint")
        var random = SplitMix64(seed: 20)
        for total in [256 * 1024, 100_003] {
            let data = (0..<total).map { _ in UInt8.random(in: 0...255, using: &random) }
            let echo = try h.inStream(endpoint: inp.address, transferSize: 16384, transfers: 4)
            let writer = try h.outStream(endpoint: out.address, transferSize: 16384, transfers: 4)
            var cuts: [Range<Int>] = []
            var at = 0
            while at < total {
                let n = min(total - at, Int.random(in: 1...5000, using: &random))
                cuts.append(at..<(at + n))
                at += n
            }
            let pieces = cuts
            let written = Task.detached { () async throws -> UInt64 in
                for (i, piece) in pieces.enumerated() {
                    // Filled in place, straight into the transfers' buffers.
                    let fill = { (region: UnsafeMutableRawBufferPointer, offset: Int) in
                        data[(piece.lowerBound + offset)...].withUnsafeBytes {
                            region.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<region.count]))
                        }
                    }
                    // The blocking forms from a synchronous function (in async code the async one is chosen).
                    func blocking() throws(HandleError) {
                        if i % 3 == 0 {
                            try data[piece].withUnsafeBytes { b in Result { () throws(HandleError) in try writer.write(from: b) } }.get()
                        } else {
                            try writer.write(count: piece.count, filling: fill)
                        }
                    }
                    if i % 3 == 2 {
                        try await writer.write(count: piece.count, filling: fill)  // suspends instead of blocking
                    } else {
                        try blocking()
                    }
                }
                return try writer.finish(timeout: .seconds(10))
            }
            // The echo read as an AsyncSequence: each chunk lends its transfer's buffer.
            let (back, chunks) = try await within(30, "\(total) bytes: the echo") {
                var back: [UInt8] = []
                var chunks: [Int] = []
                do {
                    for try await chunk in echo {
                        chunks.append(chunk.count)
                        back += chunk
                        if back.count >= total { break }
                    }
                } catch { chunks.append(-1) }
                return (back, chunks)
            }
            try expect(!chunks.contains(-1), "\(total) bytes: the echo stream failed after \(back.count) bytes")
            try expectEqual(try await written.value, UInt64(total), "\(total) bytes: the bytes finish() reports sent")
            try expect(back == data, "\(total) bytes: the echo differs from what was written (\(back.count) bytes back)")
            if total % out.maxPacketSize == 0 {
                // The zero-length packet reaches the gadget, which echoes it as an empty transfer.
                let marker = try echo.next(timeout: .seconds(5)).orFail("the echo stream ended")
                try expectEqual(marker.count, 0, "\(total) bytes: the transfer after the data (the zero-length packet's echo)")
            } else {
                // Nothing may follow (a bound, not a wait for an event: proving an absence).
                let extra = Result { () throws(HandleError) in try echo.next(timeout: .milliseconds(500)) }
                if case .success(let chunk) = extra {
                    throw LabFailure("\(total) bytes: a transfer of \(chunk?.count ?? -1) bytes came after the data")
                }
                if case .failure(let error) = extra, error != .timeout {
                    throw LabFailure("\(total) bytes: the echo stream failed after the data: \(error)")
                }
            }
            echo.stop()
            _ = await echo.wait()
            figure("out stream \(total) bytes in \(pieces.count) writes: echoed in \(chunks.count) IN transfers")
        }
    }

    r.add("io streams: an OUT stream to a loopback gadget nobody reads from waits once the device stops taking data (backpressure) and ends with deviceRemoved within 100 ms of an unplug") {
        let f = try await ManagerFixture()
        defer { f.stop() }
        try Devlab.run(["create", "ko2", "loopback", "--vid", "1209", "--pid", "0d51", "--serial", "LAB-KO-2"])
        let link = "usb#vid_1209&pid_0d51#LAB-KO-2#\(LabClasses.vendorBulk)"
        let p = try Devlab.plug("ko2")
        _ = try await f.next(1, "the loopback's arrival", where: { $0.event == .arrival && $0.interface.symbolicLink.rawValue == link })
        let mon = try UsbmonBus(p)
        defer { mon.stop() }
        let h = try f.manager.openUSB(link)
        defer { h.close() }
        let out = try h.endpoints.first { !$0.isIn && $0.kind == .bulk }.orFail("no bulk OUT endpoint")
        let writer = try h.outStream(endpoint: out.address, transferSize: 16384, transfers: 4)
        let total = 16 << 20
        let ended = Inbox<(Result<UInt64, HandleError>, ContinuousClock.Instant)>()
        Thread {
            let chunk = [UInt8](repeating: 0x5A, count: 16384)
            do throws(HandleError) {
                for _ in 0..<(total / chunk.count) { try writer.write(chunk) }
                ended.post((.success(try writer.finish(timeout: nil)), .now))
            } catch { ended.post((.failure(error), .now)) }
        }.start()
        // The gadget's buffers fill (nobody reads its IN side): our OUT URBs
        // stay submitted and not completed, and the writer is held back.
        try await mon.waitPending(mon.word("Bo", out.address), "the OUT stream's URBs waiting on the full gadget")
        try expect(ended.isEmpty, "the writer finished 16 MiB into a gadget that stopped taking data")
        let sent = writer.bytesSent
        try expect(sent < UInt64(total), "the device took \(sent) of \(total) bytes")
        let t0 = try unplugNow("ko2")
        let (result, t1) = try await ended.next(within: 5, "the writer to end after the unplug")
        let error = try expectFailure(result, "the blocked OUT stream")
        try expect(error == .deviceRemoved, "the blocked OUT stream ended with \(error), not deviceRemoved")
        try expectEqual(error.link, link, "the error names the link")
        try expect(ms(t1 - t0) <= 100, "the OUT stream ended \(ms(t1 - t0)) ms after the unplug (limit 100 ms)")
        figure("out stream held back after \(sent) bytes; ended \(ms(t1 - t0)) ms after the unplug")
    }
}

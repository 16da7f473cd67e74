// The device rows, run inside the lab VM by Benchmarks/lab/device-bench.sh.
// Each subcommand takes the same options as its C baseline in
// Benchmarks/baselines and does the same work through devif's public API:
// a manager finds the instance by VID/PID, a handle does the I/O.
import AllocationCounting
import ArgumentParser
import Devif
import DevifCore
import DevifUSB
import Foundation
import Synchronization

let deviceBenchCommands: [any ParsableCommand.Type] = [
    BulkInBench.self, BulkOutBench.self, BulkLoopbackBench.self, HIDEchoBench.self, PlugArrivalBench.self, BurstArrivalBench.self, StormArrivalBench.self,
]

/// The device to measure, by IDs (what the C baselines open too).
struct DeviceOptions: ParsableArguments {
    @Option(help: "Vendor ID, hex.", transform: parseHex16)
    var vid: UInt16
    @Option(help: "Product ID, hex.", transform: parseHex16)
    var pid: UInt16
}

func parseHex16(_ text: String) throws -> UInt16 {
    let digits = text.lowercased().hasPrefix("0x") ? String(text.dropFirst(2)) : text
    guard let value = UInt16(digits, radix: 16) else { throw ValidationError("'\(text)' is not a 16-bit hex number") }
    return value
}

func parseEndpoint(_ text: String) throws -> EndpointAddress { EndpointAddress(rawValue: try parseHex8(text)) }

func parseHex8(_ text: String) throws -> UInt8 {
    let digits = text.lowercased().hasPrefix("0x") ? String(text.dropFirst(2)) : text
    guard let value = UInt8(digits, radix: 16) else { throw ValidationError("'\(text)' is not an 8-bit hex number") }
    return value
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A started manager (registry in memory: the I/O rows do not measure it)
/// and the link of the device's `kind` instance with these IDs.
func openManager(_ device: DeviceOptions, kind: DeviceKind, inMemory: Bool = true) async throws -> (DeviceManager, String) {
    var options = DeviceManager.Options()
    options.inMemoryRegistry = inMemory
    let manager = try await startedManager(options)
    let filter = InterfaceFilter(vendorId: device.vid, productId: device.pid, kind: kind)
    // The device instance (no mi_NN) for USB; the first HID node for HID.
    let found = manager.interfaces(filter).filter { kind == .hid || $0.interfaceNumber == nil }
    guard let link = found.map(\.symbolicLink.rawValue).sorted().first else {
        throw BenchFailure("no \(kind) instance with VID \(hex4(device.vid)) PID \(hex4(device.pid)) is present (see `devif-usb list`)")
    }
    return (manager, link)
}

/// A manager started with `options`, its sources done listing.
func startedManager(_ options: DeviceManager.Options) async throws -> DeviceManager {
    let manager = try DeviceManager(options: options)
    manager.start()
    guard await manager.waitUntilEnumerated(timeout: .seconds(20)) else {
        manager.stop()
        throw BenchFailure("the device sources did not finish listing devices within 20 s")
    }
    return manager
}

/// Writes `value` to a gadget's UDC file (plug: a UDC name; unplug: empty).
func writeUDCFile(_ path: String, _ value: String) throws {
    let fd = open(path, O_WRONLY)
    guard fd >= 0 else { throw BenchFailure("open(\(path)): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let line = Array((value + "\n").utf8)
    // An unbind of an unbound gadget fails with ENODEV: already unplugged.
    if write(fd, line, line.count) < 0, !(value.isEmpty && errno == ENODEV) {
        throw BenchFailure("write '\(value)' to \(path): \(String(cString: strerror(errno)))")
    }
}

func megabytesPerSecond(_ bytes: UInt64, _ nanoseconds: UInt64) -> Double {
    Double(bytes) / (Double(nanoseconds) / 1e9) / 1e6
}

/// The rate of a running transfer's byte count over `seconds`, after the
/// C baselines' 0.5 s warm-up (a fixed span, not synchronisation: the
/// emulated CPU translates new code on first use).
func megabytesPerSecond(over seconds: Double, counting bytes: () -> UInt64) async throws -> Double {
    try await Task.sleep(for: .milliseconds(500))
    let b0 = bytes(), t0 = monotonicNanoseconds()
    try await Task.sleep(for: .seconds(seconds))
    let b1 = bytes(), t1 = monotonicNanoseconds()
    return megabytesPerSecond(b1 - b0, t1 - t0)
}

// MARK: bulk IN

struct BulkInBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulk-in",
        abstract: "Bulk IN throughput (MB/s) from a SourceSink gadget through a devif USB handle.",
        discussion: """
            --mode push (USBHandle.startReading): --transfers transfers of --transfer-size bytes \
            in flight, each handed to a handler on devif's event thread and resubmitted at once, \
            as the C baseline (raw libusb async) does. --mode stream: the same transfers through \
            USBHandle.inStream, read with `for try await chunk in stream` (each chunk lends its \
            transfer's buffer) in a task on Swift's global executor; --mode stream-on-completions: \
            the same loop in a task that prefers USBHandle.completionExecutor. \
            Counts bytes for --seconds after a 0.5 s warm-up.
            """)
    enum Mode: String, ExpressibleByArgument, CaseIterable { case push, stream, streamOnCompletions = "stream-on-completions" }
    @OptionGroup var device: DeviceOptions
    @Option(help: "IN endpoint, hex.", transform: parseEndpoint) var endpoint: EndpointAddress = 0x81
    @Option(help: "Bytes per transfer.") var transferSize = 16384
    @Option(help: "Transfers in flight.") var transfers = 8
    @Option(help: "Seconds to measure.") var seconds = 3.0
    @Option(help: "How devif reads: push (a handler per transfer) or stream (an AsyncSequence).") var mode = Mode.push

    func run() async throws {
        let (manager, link) = try await openManager(device, kind: .usb)
        defer { manager.stop() }
        let handle = try manager.openUSB(link)
        defer { handle.close() }
        let bytes: () -> UInt64
        let finish: () async throws -> Void
        switch mode {
        case .push:
            let reader = try handle.startReading(endpoint: endpoint, transferSize: transferSize,
                                                 transfers: transfers) { _ in .continue }
            bytes = { reader.bytesReceived }
            finish = {
                reader.stop()
                if let error = await reader.wait() { throw BenchFailure("bulk-in: \(error)") }
            }
        case .stream, .streamOnCompletions:
            let stream = try handle.inStream(endpoint: endpoint, transferSize: transferSize, transfers: transfers)
            let read = { @Sendable () async throws -> Int in
                var total = 0
                for try await chunk in stream { total &+= chunk.count }
                return total
            }
            let consumer = mode == .stream ? Task { try await read() }
                : Task(executorPreference: USBHandle.completionExecutor) { try await read() }
            bytes = { stream.bytesReceived }
            finish = {
                stream.stop()
                _ = try await consumer.value
            }
        }
        let rate = try await megabytesPerSecond(over: seconds, counting: bytes)
        try await finish()
        Sample(measure: "bulk-in", impl: "devif", value: rate, unit: "MB/s", note: "\(transfers)x\(transferSize) \(mode.rawValue)").emit()
    }
}

// MARK: bulk OUT

struct BulkOutBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulk-out",
        abstract: "Bulk OUT throughput (MB/s) to a SourceSink gadget through a devif OUT stream.",
        discussion: """
            USBHandle.outStream with --transfers transfers of --transfer-size bytes queued; one \
            thread writes --transfer-size pieces of zeros in place (write(count:filling:), no copy) \
            with blocking writes (backpressure holds it while every transfer is in flight), as \
            the C baseline (raw libusb async, each transfer resubmitted from its callback) keeps \
            its transfers queued. Counts the bytes of \
            completed transfers for --seconds after a 0.5 s warm-up.
            """)
    @OptionGroup var device: DeviceOptions
    @Option(help: "OUT endpoint, hex.", transform: parseEndpoint) var endpoint: EndpointAddress = 0x01
    @Option(help: "Bytes per transfer.") var transferSize = 16384
    @Option(help: "Transfers in flight.") var transfers = 8
    @Option(help: "Seconds to measure.") var seconds = 3.0
    // What filling costs: the first `transfers` writes each get a new
    // buffer, so zeroing those leaves every buffer zeros for good.
    @Flag(help: "Zero only the first --transfers pieces (each a new buffer), then write without filling, as the C program resubmits buffers it zeroed once (a diagnostic, not the row).") var fillOnce = false

    func run() async throws {
        let (manager, link) = try await openManager(device, kind: .usb)
        defer { manager.stop() }
        let handle = try manager.openUSB(link)
        defer { handle.close() }
        let fillOnce = self.fillOnce, transfers = self.transfers
        let stream = try handle.outStream(endpoint: endpoint, transferSize: transferSize, transfers: transfers)
        let stop = Atomic<Bool>(false)
        let failure = Mutex<HandleError?>(nil)
        let done = DispatchSemaphore(value: 0)
        // SourceSink's sink (pattern 0, the default) takes zeros and stalls
        // on anything else: each piece is zeros written in place (the C
        // program resubmits buffers it zeroed once).
        let piece = transferSize
        let writer = Thread {
            do throws(HandleError) {
                var n = 0
                while !stop.load(ordering: .relaxed) {
                    let fill = !fillOnce || n < transfers
                    n += 1
                    try stream.write(count: piece) { region, _ in if fill { region.initializeMemory(as: UInt8.self, repeating: 0) } }
                }
            } catch { failure.withLock { $0 = error } }
            done.signal()
        }
        writer.start()
        let rate = try await megabytesPerSecond(over: seconds) { stream.bytesSent }
        stop.store(true, ordering: .relaxed)
        done.wait()
        if let error = failure.withLock({ $0 }) { throw BenchFailure("bulk-out: \(error)") }
        stream.cancel()
        Sample(measure: "bulk-out", impl: "devif", value: rate, unit: "MB/s", note: "\(transfers)x\(transferSize)").emit()
    }
}

// MARK: bulk loopback

struct BulkLoopbackBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulk-loopback",
        abstract: "Bulk loopback throughput (MB/s of verified bytes) through a Loopback gadget.",
        discussion: """
            Synchronous ping-pong, as the C baseline: write --chunk bytes of a changing pattern \
            to the OUT endpoint, read them back from the IN endpoint, verify; after a 0.5 s \
            warm-up (as the C baseline: the emulated CPU translates new code on first use), \
            for --seconds.
            """)
    @OptionGroup var device: DeviceOptions
    @Option(name: .customLong("out"), help: "OUT endpoint, hex.", transform: parseEndpoint) var outEndpoint: EndpointAddress = 0x02
    @Option(name: .customLong("in"), help: "IN endpoint, hex.", transform: parseEndpoint) var inEndpoint: EndpointAddress = 0x81
    @Option(help: "Bytes per round trip.") var chunk = 4096
    @Option(help: "Seconds to measure.") var seconds = 3.0

    func run() async throws {
        let (manager, link) = try await openManager(device, kind: .usb)
        defer { manager.stop() }
        let handle = try manager.openUSB(link)
        defer { handle.close() }
        let (echoed, nanoseconds) = try pingPong(handle)
        Sample(measure: "bulk-loopback", impl: "devif", value: megabytesPerSecond(echoed, nanoseconds), unit: "MB/s",
               note: "chunk=\(chunk)").emit()
        // Warm synchronous transfers, counted: malloc-family calls of this
        // thread (libusb's own included) per transfer.
        var failure: (any Error)?
        let rounds = 200
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        let back = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { out.deallocate(); back.deallocate() }
        let allocations = AllocationCounter.count {
            do { try countedRounds(handle, rounds, out, back) } catch { failure = error }
        }
        if let failure { throw failure }
        Sample(measure: "sync-transfer-allocations", impl: "devif", value: Double(allocations) / Double(2 * rounds),
               unit: "allocs", note: "allocations=\(allocations) transfers=\(2 * rounds) chunk=\(chunk) counted=caller-thread").emit()
        // The same for control transfers: GET_STATUS into the caller's memory.
        let status = UnsafeMutableRawBufferPointer.allocate(byteCount: 2, alignment: 16)
        defer { status.deallocate() }
        for _ in 0..<10 { _ = try handle.controlIn(.getStatus(), into: status) }
        let controlAllocations = AllocationCounter.count {
            do { for _ in 0..<rounds { _ = try handle.controlIn(.getStatus(), into: status) } } catch { failure = error }
        }
        if let failure { throw failure }
        Sample(measure: "control-transfer-allocations", impl: "devif", value: Double(controlAllocations) / Double(rounds),
               unit: "allocs", note: "allocations=\(controlAllocations) transfers=\(rounds) counted=caller-thread").emit()
    }

    /// `rounds` warm write+read pairs into preallocated buffers.
    private func countedRounds(_ handle: USBHandle, _ rounds: Int, _ out: UnsafeMutableRawBufferPointer,
                               _ back: UnsafeMutableRawBufferPointer) throws {
        let chunk = self.chunk, outEndpoint = self.outEndpoint, inEndpoint = self.inEndpoint
        for k in 0..<rounds {
            for i in 0..<chunk { out[i] = UInt8(truncatingIfNeeded: i &+ k) }
            try handle.write(endpoint: outEndpoint, from: UnsafeRawBufferPointer(out), timeout: .seconds(5))
            let n = try handle.read(endpoint: inEndpoint, into: back, timeout: .seconds(5))
            guard n == chunk, memcmp(out.baseAddress!, back.baseAddress!, chunk) == 0 else {
                throw BenchFailure("bulk-loopback: counted round \(k) echoed \(n) of \(chunk) bytes or different ones")
            }
        }
    }

    /// The synchronous calls, as the C baseline makes them (in an async
    /// context Swift would pick the async overloads).
    private func pingPong(_ handle: USBHandle) throws -> (bytes: UInt64, nanoseconds: UInt64) {
        // Locals, as the C program's: each read of an @Option property
        // instantiates generic metadata at run time (seen in perf, per round).
        let chunk = self.chunk, outEndpoint = self.outEndpoint, inEndpoint = self.inEndpoint, seconds = self.seconds
        var pattern = [UInt8](repeating: 0, count: chunk)
        var echo = [UInt8](repeating: 0, count: chunk)
        var round: UInt8 = 0
        var echoed: UInt64 = 0
        let warmupEnd = monotonicNanoseconds() + 500_000_000
        var t0 = warmupEnd, end = UInt64.max
        var now: UInt64 = 0
        var measuring = false
        while now < end {
            round &+= 1
            for i in pattern.indices { pattern[i] = UInt8(truncatingIfNeeded: i) &+ round }
            // Caller-owned buffers, as the C baseline's.
            _ = try pattern.withUnsafeBytes { try handle.write(endpoint: outEndpoint, from: $0, timeout: .seconds(5)) }
            var got = 0
            while got < chunk {
                let n = try echo.withUnsafeMutableBytes { buffer in
                    try handle.read(endpoint: inEndpoint, into: UnsafeMutableRawBufferPointer(rebasing: buffer[got...]),
                                    timeout: .seconds(5))
                }
                got += n
            }
            guard echo == pattern else {
                throw BenchFailure("bulk-loopback: the echo differs from what was written (round \(round))")
            }
            now = monotonicNanoseconds()
            if measuring {
                echoed += UInt64(chunk)
            } else if now >= warmupEnd {
                measuring = true
                t0 = now
                end = now + UInt64(seconds * 1e9)
            }
        }
        return (echoed, now - t0)
    }
}

// MARK: HID echo

struct HIDEchoBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hid-echo",
        abstract: "HID round trip (median microseconds) through a HID gadget that echoes reports.",
        discussion: """
            Writes an output report (report ID 0 + --size bytes), reads the echoed input report, \
            verifies it; 20 warm-up round trips, then --count measured ones. Prints the median, \
            with the 99th percentile in the note.
            """)
    @OptionGroup var device: DeviceOptions
    @Option(help: "Measured round trips.") var count = 500
    @Option(help: "Report bytes without the report ID.") var size = 64

    func run() async throws {
        let (manager, link) = try await openManager(device, kind: .hid)
        defer { manager.stop() }
        let handle = try manager.openHID(link)
        defer { handle.close() }
        var times: [Double] = []
        times.reserveCapacity(count)
        var report = [UInt8](repeating: 0, count: size + 1)
        for round in 0..<(count + 20) {
            for i in 1...size { report[i] = UInt8(truncatingIfNeeded: i &+ round) }
            let t0 = monotonicNanoseconds()
            try handle.write(outputReport: report)
            let echo = try handle.read(timeout: .seconds(2))
            let t1 = monotonicNanoseconds()
            guard echo.count >= size, echo[0..<size].elementsEqual(report[1...]) else {
                throw BenchFailure("hid-echo: round trip \(round) came back different (\(echo.count) bytes)")
            }
            if round >= 20 { times.append(Double(t1 - t0) / 1000) }
        }
        Sample(measure: "hid-echo", impl: "devif", value: percentile(times, 50)!, unit: "us",
               note: "p99=\(Int(percentile(times, 99)!)) n=\(count)").emit()
    }
}

// MARK: plug to arrival

struct PlugArrivalBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plug-arrival",
        abstract: "Milliseconds from plugging a gadget (its UDC write) to a devif watch subscriber's arrival event.",
        discussion: """
            Plugs and unplugs the gadget itself --count times by writing its UDC file. The \
            manager keeps its registry in a temporary SQLite file, as a real one would. One \
            sample per plug.
            """)
    @Option(help: "The gadget's configfs folder, e.g. /sys/kernel/config/usb_gadget/devlab-NAME.")
    var gadget: String
    @Option(help: "The UDC to bind it to, e.g. dummy_udc.3.") var udc: String
    @OptionGroup var device: DeviceOptions
    @Option(help: "Plugs to measure.") var count = 10

    func run() async throws {
        let registry = NSTemporaryDirectory() + "devif-bench-\(getpid()).sqlite"
        defer { for suffix in ["", "-wal", "-shm"] { unlink(registry + suffix) } }
        var options = DeviceManager.Options()
        options.registryPath = registry
        let manager = try await startedManager(options)
        defer { manager.stop() }
        let udcFile = gadget + "/UDC"
        try writeUDCFile(udcFile, "")  // start unplugged
        // The subscriber: a task that stamps each event of the device
        // instance (interface instances arrive too) the moment it gets it.
        // With the pipeline's own publish time (wall clock), to tell the
        // pipeline's share from the delivery's.
        let (stamps, stamper) = AsyncStream<(InterfaceEvent.Kind?, UInt64, Date)>.makeStream()
        let watch = manager.watch(InterfaceFilter(vendorId: device.vid, productId: device.pid, kind: .usb))
        let subscriber = Task {
            for await update in watch.updates {
                if case .event(let e) = update, e.interface.interfaceNumber == nil {
                    stamper.yield((e.event, monotonicNanoseconds(), e.time))
                }
            }
        }
        defer { subscriber.cancel() }
        var events = stamps.makeAsyncIterator()
        func next(_ kind: InterfaceEvent.Kind) async throws -> (UInt64, Date) {
            // A bounded wait: a watchdog yields a nil kind after 20 s.
            let watchdog = Task {
                try await Task.sleep(for: .seconds(20))
                stamper.yield((nil, 0, Date()))
            }
            defer { watchdog.cancel() }
            while let (got, time, published) = await events.next() {
                guard let got else { break }
                if got == kind { return (time, published) }
            }
            throw BenchFailure("plug-arrival: no \(kind) of \(hex4(device.vid)):\(hex4(device.pid)) within 20 s")
        }
        for _ in 0..<count {
            let wall0 = Date()
            let t0 = monotonicNanoseconds()
            try writeUDCFile(udcFile, udc)
            let (t1, published) = try await next(.arrival)
            let publishedMs = published.timeIntervalSince(wall0) * 1000
            Sample(measure: "plug-arrival", impl: "devif", value: Double(t1 - t0) / 1e6, unit: "ms",
                   note: String(format: "published=%.1fms", publishedMs)).emit()
            try writeUDCFile(udcFile, "")
            _ = try await next(.removal)
        }
    }
}

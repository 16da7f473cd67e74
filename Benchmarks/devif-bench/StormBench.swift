// The storm rows (issue 17): random plugs and unplugs of many gadgets, as
// fast as the kernel takes them; devif's arrivals against a raw libusb
// hotplug callback in this same process: how many of the devices libusb saw
// devif reported, and how long after libusb's callback.
import ArgumentParser
import Devif
import Foundation
import Glibc
import SeededRandom
import Synchronization

struct StormArrivalBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storm-arrival",
        abstract: "A storm of random plugs and unplugs: devif's arrivals against a raw libusb hotplug callback.",
        discussion: """
            --operations times: picks a gadget GADGET-PREFIX00 ... at random (seeded); plugs \
            it if unplugged (one UDC write) and holds it 50 to --max-hold-ms, or unplugs it \
            once that time is up; then waits 0 to --max-pause-ms. Then unplugs every gadget \
            and waits for the removals. Per run it \
            prints the share of the devices libusb's callback saw that devif reported \
            (storm-reported, percent), and the median and 95th percentile of devif's \
            arrival (publish time) after that callback (storm-lag, storm-lag-p95, ms).
            """)
    @Option(help: "The gadgets' configfs folders without their two-digit number.") var gadgetPrefix: String
    @Option(help: "How many gadgets (numbered 00 on, gadget k on dummy_udc.k).") var gadgets = 24
    @OptionGroup var device: DeviceOptions
    @Option(help: "Plugs and unplugs per run.") var operations = 300
    @Option(help: "Longest pause between two operations (ms).") var maxPauseMs = 20
    @Option(help: "Longest time a plug is held (ms; at least 50).") var maxHoldMs = 1500
    @Option(help: "Runs (three sample lines each).") var count = 1
    @Option(help: "Random seed of the first run (the next runs add 1).") var seed: UInt64 = 17

    func run() async throws {
        let rig = try await ArrivalRig(device, gadgetPrefix: gadgetPrefix, gadgets: gadgets)
        defer { rig.stop() }
        let (callbacks, recorder, udcFiles) = (rig.callbacks, rig.recorder, rig.udcFiles)
        for run in 0..<count {
            rig.reset()
            var random = SplitMix64(seed: seed &+ UInt64(run))
            // A plug is held 50 to --max-hold-ms (some devices leave before
            // they are ready, most stay a while), as in the lab's storm.
            var holdUntil = [ContinuousClock.Instant?](repeating: nil, count: gadgets)
            var plugged: [Bool] { holdUntil.map { $0 != nil } }
            var plugs = 0, done = 0
            while done < operations {
                let k = Int(random.next() % UInt64(gadgets))
                let now = ContinuousClock.now
                if let until = holdUntil[k] {
                    guard now >= until else { usleep(1000); continue }
                    try writeUDCFile(udcFiles[k], "")
                    holdUntil[k] = nil
                } else {
                    try writeUDCFile(udcFiles[k], "dummy_udc.\(k)")
                    holdUntil[k] = now + .milliseconds(50 + Int(random.next() % UInt64(max(1, maxHoldMs - 50))))
                    plugs += 1
                }
                done += 1
                let pause = random.next() % UInt64(maxPauseMs + 1)
                if pause > 0 { usleep(UInt32(pause) * 1000) }
            }
            for (k, file) in udcFiles.enumerated() where plugged[k] { try writeUDCFile(file, "") }
            // Every device devif reported leaves again; at least 5 s, so a
            // late arrival of the last operations is counted too.
            let start = ContinuousClock.now
            let deadline = start + .seconds(120)
            while recorder.removals.load(ordering: .relaxed) < recorder.arrivals.count || ContinuousClock.now < start + .seconds(5) {
                guard ContinuousClock.now < deadline else {
                    throw BenchFailure("storm-arrival: \(recorder.removals.load(ordering: .relaxed)) removals of \(recorder.arrivals.count) arrivals within 120 s")
                }
                try await Task.sleep(for: .milliseconds(20))  // a benchmark's poll, outside the timed span
            }
            let seen = callbacks.arrivals
            let lags = recorder.lags(after: seen)
            let reported = lags.count
            guard !lags.isEmpty else { throw BenchFailure("storm-arrival: no arrival matched libusb's \(seen.count) callbacks") }
            let p95 = percentile(lags, 95)!
            let middle = percentile(lags, 50)!
            let note = "\(operations) operations (\(plugs) plugs) on \(gadgets) gadgets; libusb saw \(seen.count), devif reported \(reported)"
            Sample(measure: "storm-reported", impl: "devif", value: seen.isEmpty ? 100 : 100 * Double(reported) / Double(seen.count),
                   unit: "%", note: note).emit()
            Sample(measure: "storm-lag", impl: "devif", value: middle, unit: "ms", note: note).emit()
            Sample(measure: "storm-lag-p95", impl: "devif", value: p95, unit: "ms", note: note).emit()
        }
    }
}

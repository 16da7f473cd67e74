import ArgumentParser

/// The devif side of the benchmark. Every subcommand prints sample lines
/// (see Samples.swift) that Benchmarks/report.py turns into the table; the
/// baselines (C programs in Benchmarks/baselines, Swift baselines here) print
/// the same lines, in the same run.
@main
struct DevifBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devif-bench",
        abstract: "Measure devif against raw libusb/hidapi and standard Swift baselines (prints JSON sample lines).",
        discussion: """
            Run the whole benchmark with Benchmarks/run (it builds this in release, builds \
            the C baselines, boots the lab VM for the device rows and writes the table, \
            JSON and chart). Subcommands run one measure and print one JSON line per run: \
            {"measure": ..., "impl": ..., "value": ..., "unit": ...}.
            """,
        subcommands: benchSubcommands)
}

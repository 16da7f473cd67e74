import ArgumentParser

/// Device measures, run inside the lab VM by Benchmarks/lab/device-bench.sh.
let deviceBenchCommands: [any ParsableCommand.Type] = []

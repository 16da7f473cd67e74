import ArgumentParser

/// Host measures (no device): see FanOutBench.swift and FanOutCostBench.swift.
let hostBenchCommands: [any ParsableCommand.Type] = [
    FanOutThroughput.self, FanOutAllocations.self, PublishLatency.self,
]

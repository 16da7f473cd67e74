import ArgumentParser

/// Host measures (no device): see FanOut*.swift.
let hostBenchCommands: [any ParsableCommand.Type] = []

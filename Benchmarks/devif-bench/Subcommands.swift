import ArgumentParser

/// Every measure's command. Host measures (fan-out, allocations, stalled
/// subscriber) run anywhere; device measures need the lab VM's gadgets.
let benchSubcommands: [any ParsableCommand.Type] = hostBenchCommands + deviceBenchCommands

// devif-lab-suite: the lab test suite. Runs inside the lab VM (Lab/test boots
// it); every test drives real gadgets or uhid devices.
//   devif-lab-suite [--filter TEXT] [--repeat N] [--list] [--child]
// --filter keeps the tests whose name contains TEXT (or one of its
// |-separated parts: --filter "cli:|consumer:").
// --repeat runs the chosen tests N times in one boot (for hunting a flaky one).
// --child: run by the suite itself (the hidapi 0.15.0 test, HIDAPITests.swift):
// devlab is set up already and the results file is the parent's, so it skips
// the tests before `devlab init`, the init itself and the results file, and
// first prints which hidapi it runs with.
import Foundation

// Order matters: the no-USB test runs before the USB modules are loaded,
// the no-udevd test last (it stops udevd).
var beforeInit = LabRunner()
registerNoUSBTests(&beforeInit)
var runner = LabRunner()
registerStackTests(&runner)
registerDiscoveryTests(&runner)
registerSourceStopTests(&runner)
registerIOTests(&runner)
registerIOKindsTests(&runner)
registerOutStreamTests(&runner)
registerRulesTests(&runner)
registerCLIOutputTests(&runner)
registerHIDAPITests(&runner)
registerFirmwareGUIDTests(&runner)
registerReliabilityTests(&runner)
registerStormTests(&runner)
registerLeakTests(&runner)
registerUSBIPTests(&runner)  // loads vhci-hcd and usbip-vudc, unloads them after
registerHIDChurnTest(&runner)  // stops udevd, then starts it again
registerNoUdevTests(&runner)

let args = CommandLine.arguments.dropFirst()
// A hidden mode: the permission test runs this binary as nobody to open a link.
if let i = args.firstIndex(of: ioProbeFlag), args.index(after: i) < args.endIndex {
    exit(await ioProbeMain(args[args.index(after: i)]))
}
if args.contains("--list") {
    (beforeInit.tests + runner.tests).forEach { print($0.name) }
    exit(0)
}
func value(of option: String) -> String? {
    args.firstIndex(of: option).flatMap { args.index(after: $0) < args.endIndex ? args[args.index(after: $0)] : nil }
}
let filter = value(of: "--filter")
let isChild = args.contains("--child")
guard let repeats = value(of: "--repeat").map({ Int($0) }) ?? 1, repeats > 0 else {
    FileHandle.standardError.write(Data("devif-lab-suite: --repeat takes a positive count\n".utf8))
    exit(64)
}

// Results also go to a file: the VM console mixes in other output.
let resultsPath = isChild ? nil : ProcessInfo.processInfo.environment["LAB_RESULTS"].map { $0 + "/lab-suite.txt" }
if let resultsPath { _ = FileManager.default.createFile(atPath: resultsPath, contents: nil) }
let resultsFile = resultsPath.flatMap { FileHandle(forWritingAtPath: $0) }
func log(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
    resultsFile?.write(Data((line + "\n").utf8))
}

if isChild { figure(hidapiFigureLine()) }
let (passed0, failed0) = isChild ? (0, 0) : await beforeInit.run(filter: filter, log: log)
do {
    if !isChild { try Devlab.run(["init", "--udcs", "32"]) }
} catch {
    log("FAIL lab: devlab init: \(error)")
    log("\(passed0) passed, \(failed0 + 1) failed")
    exit(1)
}
var (passed1, failed1) = (0, 0)
for _ in 0..<repeats {
    let (p, f) = await runner.run(filter: filter, log: log)
    (passed1, failed1) = (passed1 + p, failed1 + f)
}
let (passed, failed) = (passed0 + passed1, failed0 + failed1)
log("\(passed) passed, \(failed) failed")
exit(failed == 0 && passed > 0 ? 0 : 1)

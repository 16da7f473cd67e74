// Discovery where the environment is missing pieces (issue 4, item 3): no USB
// bus at all, and no udevd (as in containers).
import Devif
import DevifCore
import Foundation
import Synchronization

/// Runs before `devlab init` loads the USB modules: the VM then has no USB
/// bus at all, like CI's host, but can have uhid devices.
func registerNoUSBTests(_ r: inout LabRunner) {
    r.add("environment: with no USB bus at all, devif-usb says so in one line and still lists HID devices") {
        try expect(!FileManager.default.fileExists(atPath: "/sys/bus/usb"), "/sys/bus/usb exists before devlab init")
        try expectEqual(try runTool("/usr/sbin/modprobe", ["uhid"]), 0, "modprobe uhid")
        try Devlab.run(["create", "nu1", "uhid", "--vid", "1209", "--pid", "0d01", "--serial", "LAB-NOUSB-1"])
        try Devlab.plug("nu1")
        try settleUdev()
        let r = try runProcess(devifUSBPath, ["list", "--json", "--registry", "/tmp/devif-lab-nousb.sqlite"])
        let (o, e) = (r.stdout, r.stderr)
        try expectEqual(r.status, 0, "exit status")
        let lines = e.split(separator: "\n")
        try expectEqual(lines.count, 1, "stderr lines (\(lines))")
        try expect(lines.first?.contains("no USB on this machine") ?? false, "stderr: \(e)")
        let list = try JSONSerialization.jsonObject(with: o) as? [[String: Any]] ?? []
        let links = list.compactMap { $0["symbolicLink"] as? String }
        try expectEqual(links, ["hid#vid_1209&pid_0d01&bus_06#LAB-NOUSB-1#\(hidClass)"], "listed instances")
    }
}

/// Runs last: it stops udevd (and starts it again at the end).
func registerNoUdevTests(_ r: inout LabRunner) {
    r.add("environment: without udevd, USB and HID arrivals and removals come from kernel uevents") {
        try await stopUdevd()
        defer { restartUdevd() }
        let notices = NoticeLog()
        let f = try await ManagerFixture(onNotice: { notices.add($0) })
        progress("manager enumerated")
        defer { f.stop() }
        try expect(notices.all.contains { $0.contains("udevd is not running") }, "no notice of the fallback; notices: \(notices.all)")
        try Devlab.run(["create", "nd1", "hid", "--vid", "1209", "--pid", "0d02", "--serial", "LAB-NOUDEV-1"])
        try Devlab.run(["create", "nd2", "uhid", "--vid", "1209", "--pid", "0d03", "--serial", "LAB-NOUDEV-2"])
        try Devlab.plug("nd1")
        try Devlab.plug("nd2")
        progress("plugged")
        let usbOnly: @Sendable (InterfaceEvent) -> Bool = { isDevice(0x1209, 0x0d02)($0) && $0.interface.classGuid != LabClasses.hidInterface }
        let a = try await f.next(2, "usb-device and hid arrivals of the gadget", where: usbOnly)
        try expectEqual(Set(a.map(\.interface.classGuid)), [usbDeviceClass, hidClass], "classes of the gadget")
        let u = try await f.next(1, "the uhid arrival", where: isDevice(0x1209, 0x0d03))[0]
        try expectEqual(u.interface.symbolicLink.rawValue, "hid#vid_1209&pid_0d03&bus_06#LAB-NOUDEV-2#\(hidClass)", "uhid link")
        progress("arrivals seen")
        try Devlab.unplug("nd1")
        let removed = try await f.next(2, "removals of the gadget", where: usbOnly)
        try expect(removed.allSatisfy { $0.event == .removal }, "removal events: \(removed.map(\.event))")
        try Devlab.unplug("nd2")
        _ = try await f.next(1, "the uhid removal", where: isDevice(0x1209, 0x0d03))
        progress("removals seen")
        let notUSB = notices.all.filter { $0.contains("udevd is not running") }
        try expect(notUSB.count <= 2, "the fallback notice was given \(notUSB.count) times (once per source at most)")
    }
}

/// Stops udevd and waits until it is gone; `restartUdevd()` undoes it.
func stopUdevd() async throws {
    try expectEqual(try runTool("/usr/bin/pkill", ["-x", "systemd-udevd"]), 0, "pkill systemd-udevd")
    try await withDeadline(10, "udevd to exit") {
        while (try? runTool("/usr/bin/pgrep", ["-x", "systemd-udevd"])) == 0 { try await Task.sleep(for: .milliseconds(50)) }
    }
    progress("udevd stopped")
}

final class NoticeLog: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ s: String) { lines.withLock { $0.append(s) } }
    var all: [String] { lines.withLock { $0 } }
}

/// Starts udevd again after the no-udevd test. Not waited for: the
/// `--daemon` parent can outlive its fork here; `udevadm control --ping`
/// (bounded) tells when it answers.
func restartUdevd() {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/lib/systemd/systemd-udevd")
    p.arguments = ["--daemon"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { progress("could not start udevd again"); return }
    for _ in 0..<100 {
        if (try? runTool("/usr/bin/udevadm", ["control", "--ping", "--timeout=1"])) == 0 { return }
        usleep(100_000)
    }
    progress("udevd did not answer within 10 s after restart")
}

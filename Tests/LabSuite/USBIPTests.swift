// USB/IP (issue 18): two hosts in one VM. The exporting host is a network
// namespace joined to this one by a veth pair; its usbipd (--device) exports
// gadgets bound to usbip-vudc UDCs, which are never local devices here. The
// importing host is the VM itself, where devif runs. vhci-hcd adds 16 root
// hubs and usbip-vudc UDCs, so they are loaded for these tests alone and
// unloaded after (usbip-host, which adds nothing, stays loaded).
import Devif
import Foundation

private let exporter = "10.77.0.1"
private let namespace = "devif-exp"

/// Runs a bash line; throws with its output when it fails.
@discardableResult
private func sh(_ line: String, timeout: Double = 60) throws -> String {
    progress("usbip: sh \(line)")
    let r = try runProcess("/bin/bash", ["-c", line], timeout: timeout)
    guard r.status == 0 else { throw LabFailure("`\(line)` exited \(r.status): \(r.stderr) \(r.output)") }
    return r.output
}

/// The two hosts: modules, the namespace, the veth pair and usbipd.
private struct USBIPLab {
    init() throws {
        try sh("modprobe usbip-vudc num=4 && modprobe vhci-hcd && modprobe usbip-host")
        try sh("""
            ip netns del \(namespace) 2>/dev/null; ip link del devif-vimp 2>/dev/null; \
            ip netns add \(namespace) && ip link add devif-vimp type veth peer name devif-vexp \
            && ip link set devif-vexp netns \(namespace) \
            && ip netns exec \(namespace) ip addr add \(exporter)/24 dev devif-vexp \
            && ip netns exec \(namespace) ip link set devif-vexp up && ip netns exec \(namespace) ip link set lo up \
            && ip addr add 10.77.0.2/24 dev devif-vimp && ip link set devif-vimp up
            """)
        // The daemon must hold none of the suite's descriptors (a pipe
        // runProcess reads to its end would never end): the shell closes
        // every one above stderr, then becomes usbipd, which daemonizes.
        try startUsbipd(gadgets: true, port: "3240")
    }

    /// usbipd in the exporting namespace: `--device` serves gadgets on
    /// usbip-vudc, without it devices bound to usbip-host.
    func startUsbipd(gadgets: Bool, port: String) throws {
        try sh("for d in /proc/$$/fd/*; do n=${d##*/}; [ \"$n\" -gt 2 ] && eval \"exec $n>&-\" 2>/dev/null; done; "
            + "exec ip netns exec \(namespace) usbipd \(gadgets ? "--device" : "") --tcp-port \(port) -D </dev/null >/dev/null 2>&1", timeout: 20)
        // usbipd is up when its port answers.
        let deadline = Date().addingTimeInterval(20)
        while (try? USBIP.exportedDevices(on: exporter, port: port, timeout: .seconds(2))) == nil {
            guard Date() < deadline else { throw LabFailure("usbipd on port \(port) in \(namespace) did not answer within 20 s") }
            usleep(100_000)
        }
    }

    func tear() {
        _ = try? runProcess(devifUSBPath, ["detach", "--all"])
        _ = try? sh("pkill -x usbipd; true")
        _ = try? runProcess(devifUSBPath, ["unexport", "--all"])
        _ = try? Devlab.run(["reset"])
        _ = try? sh("ip netns del \(namespace); ip link del devif-vimp 2>/dev/null; true")
        // vhci-hcd's root hubs and usbip-vudc's UDCs go; usbip-host stays
        // (it adds no device): after the network-loss rounds its unload can
        // hang on a stub connection still ending, and the next test's
        // modprobe then failed with EBUSY.
        _ = try? sh("rm -rf /run/vhci_hcd; modprobe -r vhci-hcd usbip-vudc; true", timeout: 120)
    }

    func network(up: Bool) throws {
        try sh("ip netns exec \(namespace) ip link set devif-vexp \(up ? "up" : "down")")
    }
}

/// The links of the device `pid` among `events`.
private func links(_ events: [InterfaceEvent]) -> Set<String> { Set(events.map(\.interface.symbolicLink.rawValue)) }

private func isOur(_ pid: UInt16, _ event: InterfaceEvent.Kind) -> @Sendable (InterfaceEvent) -> Bool {
    { $0.event == event && $0.interface.vendorId == 0x1209 && $0.interface.productId == pid }
}

/// `bytes` of varied data out and back through the Loopback gadget at `link`.
private func expectLoopback(_ f: ManagerFixture, _ link: String, bytes: Int, _ how: String) async throws {
    let h = try f.manager.openUSB(link)
    defer { h.close() }
    let out = try h.endpoints.first { !$0.isIn && $0.kind == .bulk }.orFail("no bulk OUT")
    let inp = try h.endpoints.first { $0.isIn && $0.kind == .bulk }.orFail("no bulk IN")
    let data = (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
    let back = try await loopback(h, out: out.address, in: inp.address, data: data)
    try expect(back == data, "\(bytes) bytes \(how): got \(back.count) back, \(zip(back, data).filter { $0 != $1 }.count) differ")
}

/// devif-usb attach, as a user runs it.
private func attach(_ udc: String, timeout: Double? = nil) throws -> [String: Any] {
    let r = try runProcess(devifUSBPath, ["attach", exporter, udc, "--json"]
        + (timeout.map { ["--removal-timeout", String($0)] } ?? []))
    try expectEqual(r.status, 0, "devif-usb attach \(udc) exit status (stderr: \(r.stderr))")
    return try jsonObject(r.output)
}

func registerUSBIPTests(_ r: inout LabRunner) {
    r.add("usbip: imported devices are ordinary arrivals: a serial gadget keeps its local link (attached by `usbip attach`), a no-serial one keeps its link across re-attach in the other order, info says remote, list --remote classifies, bulk loopback and HID echo over USB/IP, detach is a removal; watch --attach attaches what appears") {
        let lab = try USBIPLab()
        defer { lab.tear() }
        let f = try await ManagerFixture()
        defer { f.stop() }
        let pidS: UInt16 = 0x0e01, pidN: UInt16 = 0x0e02
        try Devlab.run(["create", "ips", "loopback", "--vid", "1209", "--pid", "0e01", "--serial", "IP-S"])
        try Devlab.run(["create", "ipn", "loopback", "--vid", "1209", "--pid", "0e02", "--no-serial"])

        // Plugged here first: the links a local plug gives.
        try Devlab.plug("ips")
        let local = links(try await f.next(2, within: 30, "the serial gadget's local arrivals", where: isOur(pidS, .arrival)))
        try Devlab.unplug("ips")
        _ = try await f.next(2, within: 30, "its local removals", where: isOur(pidS, .removal))

        // Exported by the other host.
        try Devlab.run(["plug", "ips", "--udc", "usbip-vudc.0"])
        try Devlab.run(["plug", "ipn", "--udc", "usbip-vudc.1"])
        let listed = try runProcess(devifUSBPath, ["list", "--remote", exporter, "--json", "--classes-dir", LabClasses.folder])
        try expectEqual(listed.status, 0, "list --remote exit status (stderr: \(listed.stderr))")
        let remote = try (JSONSerialization.jsonObject(with: listed.stdout) as? [[String: Any]]).orFail("list --remote --json: \(listed.output)")
        try expectEqual(Set(remote.compactMap { $0["busId"] as? String }), ["usbip-vudc.0", "usbip-vudc.1"], "bus ids list --remote shows")
        for d in remote {
            // usbipd lists a gadget's device descriptor only (no interfaces):
            // the classes ids and device class codes give.
            try expect((d["classes"] as? [String] ?? []).contains("usb-device") && d["vendorId"] as? String == "1209"
                       && ["0e01", "0e02"].contains(d["productId"] as? String ?? ""),
                       "list --remote shows a Loopback gadget's ids and classes: \(d)")
        }
        let table = try runCLI(["list", "--remote", exporter, "--classes-dir", LabClasses.folder])
        try expect(table.contains("usbip-vudc.0") && table.contains("1209:0e01") && table.contains("usb-device"), "list --remote's table:\n\(table)")

        // The standard tool's attach: the serial gadget gets its local links.
        try sh("usbip attach -r \(exporter) -d usbip-vudc.0")
        let viaTool = try await f.next(2, within: 30, "arrivals after `usbip attach`", where: isOur(pidS, .arrival))
        try expectEqual(links(viaTool), local, "links of the serial gadget attached by `usbip attach` against plugged here")
        let origin = try viaTool[0].interface.remote.orFail("an imported device's instance has no remote origin")
        try expectEqual(origin.host, exporter, "remote host")
        try expectEqual(origin.busID, "usbip-vudc.0", "remote bus id")
        let info = try jsonObject(try runCLI(["info", viaTool[0].interface.symbolicLink.rawValue, "--json", "--classes-dir", LabClasses.folder]))
        let infoRemote = try (info["remote"] as? [String: Any]).orFail("info --json has no remote object: \(info)")
        try expect(infoRemote["host"] as? String == exporter && infoRemote["busId"] as? String == "usbip-vudc.0" && infoRemote["port"] as? String == "3240",
                   "info --json remote: \(infoRemote)")

        // Bulk loopback through a handle, over USB/IP.
        let linkS = "usb#vid_1209&pid_0e01#IP-S#\(LabClasses.vendorBulk)"
        try expect(local.contains(linkS), "the serial gadget's vendor-bulk link \(linkS) among \(local)")
        try await expectLoopback(f, linkS, bytes: 256 * 1024, "over USB/IP")

        // devif's attach of the no-serial gadget: named by host and bus id.
        let first = try attach("usbip-vudc.1")
        let n1 = try await f.next(2, within: 30, "the no-serial gadget's arrivals", where: isOur(pidN, .arrival))
        let firstPorts = Set(n1.compactMap(\.interface.portChain))
        for link in links(n1) {
            try expect(link.contains("@usbip%3A\(exporter)%2Fusbip-vudc.1#"), "a no-serial import is named by host and bus id: \(link)")
        }

        // Detach both (one by the standard tool's port, one by devif's name): removals.
        try runCLI(["detach", "\(exporter)/usbip-vudc.0", "\(exporter)/usbip-vudc.1"])
        _ = try await f.next(2, within: 30, "the serial gadget's removals after detach", where: isOur(pidS, .removal))
        _ = try await f.next(2, within: 30, "the no-serial gadget's removals after detach", where: isOur(pidN, .removal))

        // Again in the other order (the no-serial gadget first, on the port
        // the serial one had): the same links.
        let second = try attach("usbip-vudc.1")
        let n2 = try await f.next(2, within: 30, "the no-serial gadget's arrivals, again", where: isOur(pidN, .arrival))
        _ = try attach("usbip-vudc.0")
        let s2 = try await f.next(2, within: 30, "the serial gadget's arrivals, again", where: isOur(pidS, .arrival))
        try expectEqual(links(s2), local, "the serial gadget's links attached by devif")
        try expectEqual(links(n2), links(n1), "the no-serial gadget's links across re-attach in the other order")
        let secondPorts = Set(n2.compactMap(\.interface.portChain))
        try expect(firstPorts != secondPorts && first["vhciPort"] as? Int != second["vhciPort"] as? Int,
                   "the re-attach should land on another vhci port (first \(firstPorts), then \(secondPorts))")
        figure("usbip links: local \(local.sorted()); attached by usbip attach: the same; no-serial gadget on vhci \(firstPorts.sorted()) then \(secondPorts.sorted()): \(links(n1).sorted())")
        try runCLI(["detach", "--all"])
        _ = try await f.next(2, within: 30, "removals after detach --all", where: isOur(pidS, .removal))
        _ = try await f.next(2, within: 30, "removals after detach --all", where: isOur(pidN, .removal))

        // HID over USB/IP: a HID gadget's reports echo through a handle on
        // the imported device's hidraw node, which is named by its serial.
        try Devlab.run(["create", "iph", "hid", "--vid", "1209", "--pid", "0e08", "--serial", "IP-H"])
        try Devlab.run(["plug", "iph", "--udc", "usbip-vudc.3"])
        _ = try attach("usbip-vudc.3")
        let hidLink = "hid#vid_1209&pid_0e08&mi_00#IP-H#\(hidClass)"
        let hidArrival = try await f.events.next(within: 30, "the imported HID gadget's hid arrival", where: { $0.interface.symbolicLink.rawValue == hidLink })
        try expect(hidArrival.interface.remote?.busID == "usbip-vudc.3", "the hidraw instance's remote: \(String(describing: hidArrival.interface.remote))")
        do {
            let h = try f.manager.openHID(hidLink)
            defer { h.close() }
            for i in 0..<50 {
                let payload = (0..<64).map { UInt8(truncatingIfNeeded: i * 5 + $0) }
                try h.write(outputReport: [0] + payload)
                try expectEqual(try h.read(timeout: .seconds(5)), payload, "HID echo \(i) over USB/IP")
            }
        }
        try runCLI(["detach", "\(exporter)/usbip-vudc.3"])
        _ = try await f.events.next(within: 30, "the imported HID gadget's removal", where: { $0.event == .removal && $0.interface.symbolicLink.rawValue == hidLink })

        // watch --attach: what the host exports in the class arrives, and a
        // gadget exported later too.
        let watcher = try LineReader(devifUSBPath, ["watch", "--json", "--attach", "usb-device", "--remote", exporter,
                                                    "--class", "usb-device", "--timeout", "120", "--classes-dir", LabClasses.folder])
        defer { watcher.kill() }
        for pid in ["0e01", "0e02"] {
            let line = try await watcher.next(within: 30, "watch --attach's arrival of \(pid)") { $0.contains("pid_\(pid)") && $0.contains("\"arrival\"") }
            try expect(line.contains("\"host\":\"\(exporter)\""), "an auto-attached arrival names its host: \(line)")
        }
        try Devlab.run(["create", "ipa", "loopback", "--vid", "1209", "--pid", "0e07", "--serial", "IP-A"])
        try Devlab.run(["plug", "ipa", "--udc", "usbip-vudc.2"])
        let later = try await watcher.next(within: 30, "watch --attach's arrival of a gadget exported later") { $0.contains("pid_0e07") && $0.contains("\"arrival\"") }
        try expect(later.contains("\"busId\":\"usbip-vudc.2\""), "the later gadget's arrival: \(later)")
        watcher.kill()
        try runCLI(["detach", "--all"])
    }

    r.add("usbip: with the network gone an attach by devif ends in a removal and deviceRemoved on a pending read within 10 s (10 times), where `usbip attach` stays; with devif serving the export, attach works again once the network is back") {
        let lab = try USBIPLab()
        defer { lab.tear() }
        let f = try await ManagerFixture()
        defer { f.stop() }

        // The standard tool against usbipd: no keepalive, so the device stays attached.
        try Devlab.run(["create", "ipl", "loopback", "--vid", "1209", "--pid", "0e03", "--serial", "IP-L"])
        try Devlab.run(["plug", "ipl", "--udc", "usbip-vudc.0"])
        try sh("usbip attach -r \(exporter) -d usbip-vudc.0")
        _ = try await f.next(2, within: 30, "arrivals after `usbip attach`", where: isOur(0x0e03, .arrival))
        try lab.network(up: false)
        let standardWait = 12.0
        let gone = try? await f.events.next(within: standardWait, "a removal", where: isOur(0x0e03, .removal))
        try expect(gone == nil, "the device attached by `usbip attach` was removed after the network went (expected it to hang)")
        try lab.network(up: true)
        try runCLI(["detach", "--all"])
        _ = try await f.next(2, within: 30, "removals after detach", where: isOur(0x0e03, .removal))

        // devif at both ends, the other way round: this host (10.77.0.2)
        // exports a local gadget and serves it (`export --serve`, with
        // keepalive); the namespace attaches it (`devif-usb attach` run
        // there, so the connection is the namespace's). A pending read on the
        // imported copy; then the veth goes down.
        let pid: UInt16 = 0x0e09
        try Devlab.run(["create", "ipr", "loopback", "--vid", "1209", "--pid", "0e09", "--serial", "IP-R"])
        let plugged = try Devlab.plug("ipr")
        let busID = try plugged.port_chain.orFail("no port chain for the plugged gadget")
        _ = try await f.next(2, within: 30, "the gadget's local arrivals", where: isOur(pid, .arrival))
        let server = try LineReader(devifUSBPath, ["export", "usb#vid_1209&pid_0e09#IP-R#\(usbDeviceClass)", "--serve",
                                                  "--listen", "10.77.0.2", "--classes-dir", LabClasses.folder])
        defer { server.kill() }
        _ = try await server.next(within: 30, "export --serve to print what it exported") { $0.contains("exported \(busID)") }
        func attachFromNamespace() throws -> ProcessResult {
            try runProcess("/usr/sbin/ip", ["netns", "exec", namespace, devifUSBPath, "attach", "10.77.0.2", busID, "--json"])
        }
        let imported: @Sendable (InterfaceEvent) -> Bool = { $0.interface.productId == pid && $0.interface.remote != nil }
        var removals: [Double] = [], handleEnds: [Double] = [], reattach: [Double] = []
        for round in 1...10 {
            var a = try attachFromNamespace()
            if round > 1 {
                // The network is back: the exporting side frees the device
                // within its removal timeout of the loss, then attach works.
                let back = ContinuousClock.now
                while a.status != 0 && ContinuousClock.now < back + .seconds(15) {
                    try await Task.sleep(for: .milliseconds(250))
                    a = try attachFromNamespace()
                }
                reattach.append(Double(ms(ContinuousClock.now - back)) / 1000)
            }
            try expectEqual(a.status, 0, "attach from the namespace, round \(round) (stderr: \(a.stderr))")
            let arrivals = try await f.next(2, within: 30, "the imported copy's arrivals, round \(round)", where: { $0.event == .arrival && imported($0) })
            let link = try arrivals.first { $0.interface.classGuid == LabClasses.vendorBulk }.orFail("no vendor-bulk instance imported").interface.symbolicLink.rawValue
            let h = try f.manager.openUSB(link)
            let inp = try h.endpoints.first { $0.isIn && $0.kind == .bulk }.orFail("no bulk IN")
            // A read that waits: the Loopback gadget has nothing to send.
            let pending = Task { () -> (ContinuousClock.Instant, HandleError?) in
                do throws(HandleError) { _ = try await h.read(endpoint: inp.address, length: 512, timeout: nil); return (.now, nil) }
                catch { return (.now, error) }
            }
            try await Task.sleep(for: .milliseconds(300))
            let cut = ContinuousClock.now
            try lab.network(up: false)
            _ = try await f.next(2, within: 30, "the imported copy's removals after the network went, round \(round)",
                                 where: { $0.event == .removal && imported($0) })
            let removedAt = ContinuousClock.now
            let (endedAt, error) = await pending.value
            h.close()
            try expect(error == .deviceRemoved, "the pending read ended with \(error.map { "\($0)" } ?? "data"), not deviceRemoved, round \(round)")
            removals.append(Double(ms(removedAt - cut)) / 1000)
            handleEnds.append(Double(ms(endedAt - cut)) / 1000)
            try lab.network(up: true)
        }
        let sorted = removals.sorted(), ends = handleEnds.sorted(), again = reattach.sorted()
        figure(String(format: "usbip network loss (default removal timeout 8 s), 10 rounds: removal after median %.1f s, max %.1f s; pending read ended with deviceRemoved after median %.1f s, max %.1f s; attach again after the network came back (devif serving): median %.1f s, max %.1f s (9 rounds); `usbip attach` to usbipd: still attached after %.0f s",
                      sorted[5], sorted[9], ends[5], ends[9], again[4], again[8], standardWait))
        try expect(sorted[9] <= 10, "removal after the network went: max \(sorted[9]) s (documented bound 10 s): \(removals)")
        try expect(ends[9] <= 10, "deviceRemoved on the pending read: max \(ends[9]) s (documented bound 10 s): \(handleEnds)")
        _ = try runProcess("/usr/sbin/ip", ["netns", "exec", namespace, devifUSBPath, "detach", "--all"])
        // SIGTERM gives the device back; the modules unload only after that.
        server.kill()
        try expectEqual(try await server.exitStatus(within: 30, "export --serve to give the device back and exit"), 0,
                        "export --serve's exit status after SIGTERM")
    }

    r.add("usbip: export binds a local device to usbip-host for usbipd: list --remote shows its ids and classes, another host attaches it and loops data back, this host's open says it is exported, unexport gives it back; a keyboard is exported only by link") {
        let lab = try USBIPLab()
        defer { lab.tear() }
        try lab.startUsbipd(gadgets: false, port: "3241")
        let f = try await ManagerFixture()
        defer { f.stop() }
        try Devlab.run(["create", "ipx", "loopback", "--vid", "1209", "--pid", "0e05", "--serial", "IP-X"])
        let plugged = try Devlab.plug("ipx")
        let busID = try plugged.port_chain.orFail("no port chain for the plugged gadget")
        let link = "usb#vid_1209&pid_0e05#IP-X#\(LabClasses.vendorBulk)"
        _ = try await f.next(2, within: 30, "the gadget's arrivals", where: isOur(0x0e05, .arrival))
        let classes = ["--classes-dir", LabClasses.folder]

        // Exported: this host cannot open it, and says why.
        let export = try runProcess(devifUSBPath, ["export", link, "--keep"] + classes)
        try expectEqual(export.status, 0, "devif-usb export exit status (stderr: \(export.stderr))")
        try expect(USBIP.isExported(busID: busID), "\(busID) is not bound to usbip-host after export")
        do {
            let h = try f.manager.openUSB(link)
            h.close()
            throw LabFailure("opening an exported device succeeded")
        } catch let e as HandleError {
            try expect(e == .busy && "\(e)".contains("exported over USB/IP"), "open of an exported device: \(e)")
        }
        // (A new manager sees it unconfigured, as usbip-host leaves it: its
        // device instance is there, its interface's class is not.)
        let deviceLink = "usb#vid_1209&pid_0e05#IP-X#\(usbDeviceClass)"
        let info = try runCLI(["info", deviceLink] + classes)
        try expect(info.contains("exported by this host"), "info does not say the device is exported:\n\(info)")

        // The other host lists it with its interfaces, attaches it, loops data back.
        let r = try runProcess(devifUSBPath, ["list", "--remote", exporter, "--port", "3241", "--json"] + classes)
        let remote = try (JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]]).orFail("list --remote --json: \(r.output) \(r.stderr)")
        let entry = try remote.first { $0["busId"] as? String == busID }.orFail("list --remote lacks \(busID): \(remote)")
        // usbip-host holds the device unconfigured until an importer sets a
        // configuration, so usbipd lists no interfaces: device-level classes.
        try expect(entry["vendorId"] as? String == "1209" && entry["productId"] as? String == "0e05"
                   && (entry["classes"] as? [String] ?? []).contains("usb-device"),
                   "list --remote of a usbip-host device: ids and classes: \(entry)")
        let a = try runProcess(devifUSBPath, ["attach", exporter, busID, "--port", "3241", "--json"])
        try expectEqual(a.status, 0, "attach from port 3241 (stderr: \(a.stderr))")
        let imported = try await f.next(2, within: 30, "the imported copy's arrivals", where: { e in
            e.event == .arrival && e.interface.productId == 0x0e05 && e.interface.remote != nil })
        let importedLink = try imported.first { $0.interface.classGuid == LabClasses.vendorBulk }.orFail("no vendor-bulk instance imported").interface.symbolicLink.rawValue
        try await expectLoopback(f, importedLink, bytes: 64 * 1024, "through an exported and attached device")
        try runCLI(["detach", "--all"])
        _ = try await f.next(2, within: 30, "the imported copy's removals", where: { $0.event == .removal && $0.interface.productId == 0x0e05 })

        // Given back: this host opens it again.
        try runCLI(["unexport", busID])
        try expect(!USBIP.isExported(busID: busID), "\(busID) still bound to usbip-host after unexport")
        // No event marks the driver's return (the device never left): poll.
        let until = ContinuousClock.now + .seconds(10)
        while true {
            do {
                let h = try f.manager.openUSB(link)
                h.close()
                break
            } catch {
                guard ContinuousClock.now < until else { throw LabFailure("the device does not open 10 s after unexport: \(error)") }
                try await Task.sleep(for: .milliseconds(100))
            }
        }


        // A keyboard: never by class, only by link.
        let kbd = "05010906a101050719e029e71500250175019508810295017508810195067508150025650507190029658100c0"
        try Devlab.run(["create", "ipk", "hid", "--vid", "1209", "--pid", "0e06", "--serial", "IP-K", "--hid-mode", "none",
                        "--report-desc", kbd, "--report-len", "8"])
        try Devlab.plug("ipk")
        let keyboard = try await f.events.next(within: 30, "the keyboard's keyboard instance", where: { e in
            e.event == .arrival && e.interface.productId == 0x0e06 && e.interface.classGuid == WellKnownClass.keyboard.guid })
        let byClass = try runProcess(devifUSBPath, ["export", "--class", "hid", "--keep"] + classes)
        try expect(byClass.status != 0 && byClass.stderr.contains("keyboard or a mouse"), "export --class hid with a keyboard present: status \(byClass.status), \(byClass.stderr)")
        let kbdChain = try keyboard.interface.portChain.orFail("no port chain for the keyboard").description
        try expect(!USBIP.isExported(busID: kbdChain), "the keyboard was exported by class")
        let byLink = try runProcess(devifUSBPath, ["export", keyboard.interface.symbolicLink.rawValue, "--keep"] + classes)
        try expectEqual(byLink.status, 0, "export of a keyboard named by link (stderr: \(byLink.stderr))")
        try expect(USBIP.isExported(busID: kbdChain), "the keyboard named by link was not exported")
        try runCLI(["unexport", "--all"])
    }
}

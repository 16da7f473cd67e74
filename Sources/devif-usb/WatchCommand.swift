import ArgumentParser
import Devif
import Dispatch
import FoundationEssentials
import Glibc

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Print arrivals and removals of instances as they happen.",
        discussion: """
            Runs until interrupted (SIGINT or SIGTERM end it cleanly with status 0), \
            until --count events were printed, or until --timeout expires. \
            With --enumerate, the instances present at start are printed first as \
            arrivals; the snapshot and the live changes never miss or repeat an event. \
            Each event has a sequence number that increases by one per event the \
            watcher's manager publishes; a slow reader that falls behind is told how \
            many events it missed.

            With --links DIR, also keeps DIR as a folder of symbolic links, \
            DIR/<class>/<symbolic link> -> the device node, one folder per class, with \
            the library's names: made atomically, removed on departure, stale ones of \
            its own removed at start, all removed at exit. It never touches an entry \
            it did not make (a manifest, DIR/.devif-links, records its own), and no \
            device string can place anything outside DIR. One watcher per DIR.

            With --attach CLASS --remote HOST (HOST repeatable), also attaches over \
            USB/IP every device those hosts export with an instance in CLASS, as it \
            appears (usbipd is asked every 2 s), so it arrives here and is reported \
            like the rest; see `devif-usb attach --help`. Needs root and vhci-hcd.
            """)

    @Option(name: .customLong("class"), help: ArgumentHelp("Only instances of this class (GUID or name).", valueName: "class"))
    var classArgument: ClassArgument?

    @Flag(name: .customLong("enumerate"), help: "First print the instances already present, as arrivals.")
    var enumerate = false

    @Flag(name: .customLong("json"), help: "Print one JSON object per event per line.")
    var json = false

    @Option(name: .customLong("count"), help: ArgumentHelp("Exit after printing this many events.", valueName: "n"))
    var count: Int?

    @Option(name: .customLong("timeout"), help: ArgumentHelp("Exit (status 0) after this many seconds.", valueName: "seconds"))
    var timeout: Double?

    @Option(name: .customLong("links"), help: ArgumentHelp("Keep this folder of symbolic links in step (DIR/<class>/<link> -> node).", valueName: "dir"))
    var links: String?

    @Option(name: .customLong("attach"), help: ArgumentHelp("With --remote: attach every device the hosts export in this class as it appears.", valueName: "class"))
    var attachClass: ClassArgument?

    @Option(name: .customLong("remote"), help: ArgumentHelp("A host whose exported devices --attach attaches (repeatable).", valueName: "host"))
    var remoteHosts: [String] = []

    @OptionGroup var remote: RemoteOptions
    @OptionGroup var common: CommonOptions

    func validate() throws {
        if (attachClass == nil) != remoteHosts.isEmpty {
            throw ValidationError("--attach CLASS and --remote HOST go together: attach what HOST exports in CLASS")
        }
        if let count, count < 1 { throw ValidationError("--count must be a whole number of at least 1, not \(count)") }
        if let timeout, !(timeout > 0) || !timeout.isFinite {
            throw ValidationError("--timeout must be a positive number of seconds, not \(timeout)")
        }
    }

    func run() async throws {
        let stop = StopSignals()
        let (manager, filter) = try await startedManager(common, classArgument: classArgument, followChanges: true)
        var linkFolder: LinkFolder?
        if let links {
            do {
                linkFolder = try LinkFolder(root: links, manager: manager, filter: filter) { [common] change in
                    if case .refused(let path, let reason) = change {
                        common.notice("link folder: \(printable(path, limit: 300)): \(reason)")
                    }
                }
            } catch {
                manager.stop()
                throw fail("--links \(links): \(error)", Exit.unavailable)
            }
            linkFolder?.start()
        }
        defer { linkFolder?.stop(removingLinks: true) }
        let watch = manager.watch(filter)
        var attacher: Task<Void, Never>?
        if let attachClass {
            guard let guid = try resolveClass(attachClass, in: manager.catalog) else { return }
            let (hosts, port, catalog, connect) = (remoteHosts, remote.port, manager.catalog, remote.connectTimeout)
            attacher = Task.detached { [common] in
                await USBIP.keepAttached(classGUID: guid, from: hosts, port: port, catalog: catalog,
                                         options: USBIP.AttachOptions(connectTimeout: .seconds(connect)),
                                         notice: { common.notice($0) })
            }
        }
        defer { attacher?.cancel() }
        let printer = EventPrinter(json: json, color: common.useColor)
        var printed = 0
        let deadline = timeout.map { ContinuousClock.now + .seconds($0) }

        if enumerate {
            for event in watch.snapshotEvents {
                printer.print(event)
                printed += 1
                if let count, printed >= count { manager.stop(); return }
            }
        }
        if !json && !enumerate && common.useColor { common.notice("watching; Ctrl-C to stop") }

        // The consumer runs until --count is reached; the deadline and the stop
        // signals end it by cancellation.
        let updates = watch.updates
        let alreadyPrinted = printed
        let limit = count
        let consumer = Task {
            var printed = alreadyPrinted
            for await update in updates {
                switch update {
                case .event(let e):
                    printer.print(e)
                    printed += 1
                    if let limit, printed >= limit { return }
                case .overflow(let missed):
                    common.notice("fell behind: \(missed) events were missed; run `devif-usb list` to resync")
                }
            }
        }
        let stopper = Task {
            await stop.wait()
            consumer.cancel()
        }
        let timer = deadline.map { d in
            Task {
                try? await Task.sleep(until: d)
                consumer.cancel()
            }
        }
        await consumer.value
        stopper.cancel()
        timer?.cancel()
        watch.cancel()
        manager.stop()
    }
}

/// Human lines or JSON lines for events; flushed per event so a pipe sees
/// each as it happens.
struct EventPrinter: Sendable {
    var json: Bool
    var color: Bool

    func print(_ e: InterfaceEvent) {
        let line: String
        if json {
            line = e.json.serialized()
        } else {
            let i = e.interface
            let sign = e.event == .arrival ? "+" : "-"
            var text = "\(sign) \(e.event.rawValue.padded(to: 7)) "
                + "\(i.className ?? i.classGuid.description)  \(i.symbolicLink)"
            if e.event == .arrival, let node = i.devnode { text += "  \(node)" }
            if i.access == .denied { text += "  (access denied)" }
            if e.event == .arrival, i.leftBeforeReady { text += "  (left before it was ready)" }
            if color { text = (e.event == .arrival ? "\u{1B}[32m" : "\u{1B}[31m") + text + "\u{1B}[0m" }
            line = text
        }
        writeOutput((line + "\n"))
    }
}

/// SIGINT and SIGTERM end a watch cleanly: the default action would kill
/// the process mid-line.
final class StopSignals: @unchecked Sendable {  // sources are set once in init and only kept alive
    private let sources: [any DispatchSourceSignal]
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        let c = continuation
        sources = [SIGINT, SIGTERM].map { sig in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { c.yield() }
            s.resume()
            return s
        }
    }

    func wait() async {
        for await _ in stream { return }
    }
}

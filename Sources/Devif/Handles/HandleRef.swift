import DevifCore
import DevifHID
import DevifUSB

/// An error from a backend that a handle reports as a ``/DevifCore/HandleError``.
protocol BackendError: Error {
    func handleError(link: String) -> HandleError
}
extension USBError: BackendError {
    func handleError(link: String) -> HandleError { HandleError(self, link: link) }
}
extension HIDError: BackendError {
    func handleError(link: String) -> HandleError { HandleError(self, link: link) }
}

/// What USB and HID handles share: the table slot, the instance, and the
/// one path every call takes (validate the handle lock-free, count the call
/// for removal notices, map errors, notice removal).
struct HandleRef: Sendable {
    let handle: Handle
    let instance: OpenInstance
    let table: HandleTable<OpenInstance>

    func perform<R, E: BackendError>(_ body: () throws(E) -> R) throws(HandleError) -> R {
        instance.tracker.begin()
        defer { instance.tracker.end() }
        let outcome: Result<R, HandleError>
        do {
            outcome = try table.withResource(handle) { _ in
                do throws(E) { return .success(try body()) } catch { return .failure(error.handleError(link: instance.link)) }
            }
        } catch {
            throw tableError(error)
        }
        return try settle(outcome)
    }

    func performAsync<R, E: BackendError>(_ body: () async throws(E) -> R) async throws(HandleError) -> R {
        instance.tracker.begin()
        defer { instance.tracker.end() }
        let outcome: Result<R, HandleError>
        do {
            outcome = try await table.withResource(handle) { _ in
                do throws(E) { return .success(try await body()) } catch { return .failure(error.handleError(link: instance.link)) }
            }
        } catch {
            throw tableError(error)
        }
        return try settle(outcome)
    }

    private func tableError(_ error: any Error) -> HandleError {
        if let e = error as? HandleTableError { return HandleError(e, link: instance.link) }
        return HandleError.closed(instance.link, "\(error)")
    }

    private func settle<R>(_ outcome: Result<R, HandleError>) throws(HandleError) -> R {
        switch outcome {
        case .success(let value): return value
        case .failure(let error):
            // The I/O saw the device go before the manager did.
            if error == .deviceRemoved { markRemoved() }
            throw error
        }
    }

    func markRemoved() {
        let instance = instance
        table.markRemoved { $0 === instance }
        instance.markRemoved()
    }

    func close() -> Bool {
        do { try table.close(handle) } catch { return false }
        instance.close()
        return true
    }
}

import DevifCore
import Glibc

/// How long an I/O error waits for the kernel to report a device node hung
/// up before it is reported as an I/O error. It ends at the hang-up, so a
/// leaving device costs only the kernel's own delay; a device that stays
/// costs this much more on an error that already means "replug it". 50 ms
/// was too short in a storm of 9 plugs a second on the emulated kernel (a
/// control transfer on a leaving device ended in LIBUSB_ERROR_IO).
package let hangUpWaitMilliseconds: Int32 = 250

/// Whether the device behind `fd` (a usbfs or hidraw node) hangs up
/// (POLLHUP or POLLERR), waiting up to `limit` ms. Only after an error: a
/// device that is leaving fails I/O a few ms before its node says so.
///
/// `known` answers first and after every wake-up of `wake` (an eventfd the
/// owner signals when it learns of a removal or a close): true or false ends
/// the wait with that answer, nil waits on.
package func nodeHungUp(_ fd: Int32, withinMilliseconds limit: Int32 = hangUpWaitMilliseconds,
                        wake: Int32? = nil, known: () -> Bool? = { nil }) -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(limit))
    while true {
        if let answer = known() { return answer }
        let left = deadline - ContinuousClock.now
        let wait = max(0, Int32(clamping: left.milliseconds))
        // No events asked of the node: poll reports only hang-up and errors.
        var fds = [pollfd(fd: fd, events: 0, revents: 0)]
        if let wake { fds.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0)) }
        guard let n = try? Syscalls.poll(&fds, timeoutMilliseconds: wait) else { return false }
        if fds[0].revents != 0 { return fds[0].revents & Int16(POLLHUP | POLLERR) != 0 }
        if n == 0 && wait == 0 { return false }
    }
}

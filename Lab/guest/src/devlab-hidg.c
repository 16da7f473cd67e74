/* devlab-hidg: device side of a usb_f_hid gadget function.
 *
 *   devlab-hidg --dev /dev/hidgN [--mode echo|script:FILE|none]
 *               [--report-len N] [--ready-fd FD] [--open-timeout-ms MS]
 *
 * echo:   every output report the host sends (read from /dev/hidgN) is
 *         written back unchanged as an input report.
 * script: when the host sends its first output report (any bytes; the
 *         trigger is dropped), sends the reports of FILE (hex per line,
 *         "delay_ms N" lines), discarding output reports meanwhile; then
 *         only discards. Why a trigger: input reports written while no
 *         hidraw reader is open were taken by the host and lost (seen on
 *         6.1 with dummy_hcd, no error anywhere), and the device side cannot
 *         see a reader open; an output report proves one is there. A
 *         write completes when the host has read the report, so delays
 *         count from the previous write.
 * none:   only discards output reports (keeps the host's writes flowing).
 *
 * Written in C so the echo path has stable latency (no interpreter).
 * /dev/hidgN exists only while the gadget is bound to a UDC (kernel 6.1
 * creates the node in hidg_bind), so we wait for it, and if the node goes
 * away under us (unbound) we wait for it again until told to stop. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>

#define MAX_REPORT 4096

static int open_node(const char *dev, long long timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd >= 0) return fd;
        if (errno != ENOENT && errno != ENODEV && errno != ENXIO)
            die("cannot open %s: %s", dev, strerror(errno));
        if (stop_requested) return -1;
        if (timeout_ms >= 0 && now_ms() >= deadline)
            die("%s did not appear within %lld ms (gadget not bound?)", dev, timeout_ms);
        usleep(10000);
    }
}

/* Waits up to wait_ms (-1: forever) for an output report; returns its
 * length, 0 on timeout, -1 on a device error (caller reopens). */
static long read_report(int fd, unsigned char *buf, int wait_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, wait_ms);
    if (r < 0) return errno == EINTR ? 0 : -1;
    if (r == 0) return 0;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) { errno = EIO; return -1; }
    ssize_t n = read(fd, buf, MAX_REPORT);
    if (n < 0) return errno == EINTR || errno == EAGAIN ? 0 : -1;
    return (long)n;
}

static int write_report(int fd, const unsigned char *buf, size_t len)
{
    for (;;) {
        ssize_t n = write(fd, buf, len);
        if (n >= 0) return 0;
        if (errno == EINTR && !stop_requested) continue;
        return -1;
    }
}

int main(int argc, char **argv)
{
    prog_name = "devlab-hidg";
    const char *dev = NULL, *mode = "echo";
    long report_len = 64, open_timeout = 10000;
    int ready_fd = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dev") && v) { dev = v; i++; }
        else if (!strcmp(a, "--mode") && v) { mode = v; i++; }
        else if (!strcmp(a, "--report-len") && v) { report_len = atol(v); i++; }
        else if (!strcmp(a, "--ready-fd") && v) { ready_fd = atoi(v); i++; }
        else if (!strcmp(a, "--open-timeout-ms") && v) { open_timeout = atol(v); i++; }
        else die("unknown or incomplete argument '%s' (see the comment at the top of devlab-hidg.c)", a);
    }
    if (!dev) die("--dev /dev/hidgN is required");
    if (report_len < 1 || report_len > MAX_REPORT) die("--report-len must be 1..%d", MAX_REPORT);

    struct script sc = { NULL, 0 };
    int echo = 0;
    if (!strcmp(mode, "echo")) echo = 1;
    else if (!strncmp(mode, "script:", 7)) load_script(mode + 7, &sc, MAX_REPORT);
    else if (strcmp(mode, "none")) die("unknown --mode '%s' (echo, script:FILE or none)", mode);

    install_signals();
    setvbuf(stderr, NULL, _IOLBF, 0);
    unsigned char buf[MAX_REPORT];
    int fd = open_node(dev, open_timeout);
    if (fd < 0) return 0;
    signal_ready(ready_fd, dev);
    logmsg("serving %s in mode %s", dev, mode);

    size_t next = 0;                 /* next script step */
    long long step_due = now_ms();   /* when that step may run */
    unsigned long long echoed = 0;
    int triggered = 0;
    while (!stop_requested) {
        int wait_ms = -1;
        if (next < sc.count && triggered) {
            long long left = step_due - now_ms();
            if (left <= 0) {
                struct step *st = &sc.steps[next++];
                if (st->data) {
                    if (write_report(fd, st->data, st->len) < 0 && !stop_requested) {
                        /* ESHUTDOWN: the host has not configured the function
                         * yet (f_hid has no IN request before set_alt). The
                         * script starts once it has: retry this step. */
                        if (errno == ESHUTDOWN) {
                            next--;
                            step_due = now_ms() + 10;
                            continue;
                        }
                        goto reopen;
                    }
                    logmsg("script report %zu (%zu bytes) written", next, st->len);
                    step_due = now_ms();
                } else {
                    step_due = now_ms() + st->delay_ms;
                }
                continue;
            }
            wait_ms = (int)left;
        }
        long n = read_report(fd, buf, wait_ms);
        if (n < 0) goto reopen;
        if (n > 0 && sc.count && !triggered) {
            triggered = 1;
            step_due = now_ms();
            logmsg("trigger output report (%ld bytes); script starts", n);
        }
        if (n > 0 && echo) {
            if (write_report(fd, buf, (size_t)n) < 0 && !stop_requested) goto reopen;
            echoed++;
        }
        continue;
    reopen:
        if (stop_requested) break;
        logmsg("%s: %s; reopening", dev, strerror(errno));
        close(fd);
        usleep(50000);
        fd = open_node(dev, -1);
        if (fd < 0) break;
    }
    logmsg("stopping after %llu echoed reports", echoed);
    if (fd >= 0) close(fd);
    return 0;
}

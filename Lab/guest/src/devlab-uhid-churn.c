/* devlab-uhid-churn: uhid devices made and destroyed as fast as the kernel
 * takes them, so that hidraw nodes arrive while others leave.
 *
 *   devlab-uhid-churn [--count N] [--slots K] [--interval-us U]
 *                     [--vid HEX] [--pid HEX] [--uniq PREFIX]
 *
 * K devices are alive at once (slot k: product PID+k, uniq PREFIX-k, phys
 * devlab-churn/k); each new one first destroys the one in its slot, so N
 * devices are made in all, U microseconds apart, and the last K are
 * destroyed at the end. Prints {"created":N,"destroyed":N,"seconds":S}.
 * A device is destroyed by closing its /dev/uhid descriptor (the kernel
 * then sends UHID_DESTROY's teardown itself). */
#include "common.h"
#include <fcntl.h>
#include <linux/uhid.h>

/* Vendor page 0xFF00, usage 1: one 8-byte input report. */
static const unsigned char rdesc[] = {
    0x06, 0x00, 0xff, 0x09, 0x01, 0xa1, 0x01, 0x15, 0x00, 0x26, 0xff, 0x00,
    0x75, 0x08, 0x95, 0x08, 0x09, 0x01, 0x81, 0x02, 0xc0,
};

static int create(unsigned vid, unsigned pid, const char *uniq_prefix, int slot)
{
    int fd = open("/dev/uhid", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("open /dev/uhid: %s", strerror(errno));
    struct uhid_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = UHID_CREATE2;
    snprintf((char *)ev.u.create2.name, sizeof ev.u.create2.name, "devlab churn %d", slot);
    snprintf((char *)ev.u.create2.phys, sizeof ev.u.create2.phys, "devlab-churn/%d", slot);
    snprintf((char *)ev.u.create2.uniq, sizeof ev.u.create2.uniq, "%s-%d", uniq_prefix, slot);
    memcpy(ev.u.create2.rd_data, rdesc, sizeof rdesc);
    ev.u.create2.rd_size = sizeof rdesc;
    ev.u.create2.bus = 0x06; /* BUS_VIRTUAL */
    ev.u.create2.vendor = vid;
    ev.u.create2.product = pid + (unsigned)slot;
    for (;;) {
        ssize_t n = write(fd, &ev, sizeof ev);
        if (n == (ssize_t)sizeof ev) return fd;
        if (n < 0 && errno == EINTR) continue;
        die("UHID_CREATE2: %s", n < 0 ? strerror(errno) : "short write");
    }
}

int main(int argc, char **argv)
{
    prog_name = "devlab-uhid-churn";
    long count = 1000, interval_us = 2000;
    int slots = 8;
    unsigned vid = 0x1209, pid = 0x0e80;
    const char *uniq = "CHURN";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) die("%s needs a value (see the comment at the top of devlab-uhid-churn.c)", a);
        if (!strcmp(a, "--count")) count = strtol(v, NULL, 10);
        else if (!strcmp(a, "--slots")) slots = (int)strtol(v, NULL, 10);
        else if (!strcmp(a, "--interval-us")) interval_us = strtol(v, NULL, 10);
        else if (!strcmp(a, "--vid")) vid = (unsigned)strtoul(v, NULL, 16);
        else if (!strcmp(a, "--pid")) pid = (unsigned)strtoul(v, NULL, 16);
        else if (!strcmp(a, "--uniq")) uniq = v;
        else die("unknown option %s", a);
        i++;
    }
    if (count < 1 || slots < 1 || slots > 64 || interval_us < 0) die("bad --count, --slots (1-64) or --interval-us");
    int fds[64];
    for (int k = 0; k < 64; k++) fds[k] = -1;
    long created = 0, destroyed = 0;
    install_signals(); /* SIGTERM/SIGINT: stop making devices, destroy the live ones */
    long long start = now_ms();
    for (long i = 0; i < count && !stop_requested; i++) {
        int k = (int)(i % slots);
        if (fds[k] >= 0) { close(fds[k]); destroyed++; }
        fds[k] = create(vid, pid, uniq, k);
        created++;
        if (interval_us) usleep((useconds_t)interval_us);
    }
    for (int k = 0; k < slots; k++) if (fds[k] >= 0) { close(fds[k]); destroyed++; }
    printf("{\"created\":%ld,\"destroyed\":%ld,\"seconds\":%.3f}\n", created, destroyed, (now_ms() - start) / 1000.0);
    return 0;
}

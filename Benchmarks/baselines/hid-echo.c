/* hid-echo: hidapi (hidraw backend) round trip against an echoing HID
 * device: write an output report (report ID 0 + --size bytes), read the
 * input report back with hid_read_timeout, compare. Each round trip is
 * timed with CLOCK_MONOTONIC; after 20 warm-up rounds, prints the median of
 * --count rounds (nearest rank) and the p99 in the note. */
#include "common.h"
#include <hidapi.h>

static const char *usage = "--vid HEX --pid HEX [--count 500] [--size 64]";
static const int timeout_ms = 2000;

int main(int argc, char **argv)
{
    prog_name = "hid-echo";
    struct opt opts[] = { {"vid", NULL}, {"pid", NULL}, {"count", "500"}, {"size", "64"} };
    size_t n = sizeof opts / sizeof opts[0];
    parse_opts(argc, argv, opts, n, usage);
    unsigned short vid = (unsigned short)opt_hex(opts, n, "vid", 0xffff);
    unsigned short pid = (unsigned short)opt_hex(opts, n, "pid", 0xffff);
    int count = (int)opt_long(opts, n, "count", 1, 10000000);
    int size = (int)opt_long(opts, n, "size", 1, 4096);

    if (hid_init() != 0) die("hid_init failed");
    hid_device *d = hid_open(vid, pid, NULL);
    if (!d) {
        /* hid_error(NULL) has the reason since hidapi 0.10 (e.g. permission denied). */
        const wchar_t *why = hid_error(NULL);
        die("open HID %04x:%04x failed: %ls", vid, pid, why ? why : L"no such device");
    }

    unsigned char *out = malloc((size_t)size + 1), *in = malloc((size_t)size + 1);
    double *rtt = malloc((size_t)count * sizeof *rtt);
    if (!out || !in || !rtt) die("out of memory");
    const int warmup = 20;
    for (int k = 0; k < warmup + count; k++) {
        out[0] = 0; /* no report IDs: hidraw wants a leading 0, not sent on the wire */
        for (int i = 0; i < size; i++) out[1 + i] = (unsigned char)(k * 29 + i * 3 + 1);
        double t = now_s();
        int w = hid_write(d, out, (size_t)size + 1);
        if (w < 0) die("hid_write, round %d: %ls", k, hid_error(d));
        if (w != size + 1) die("hid_write, round %d: wrote %d of %d bytes", k, w, size + 1);
        int r = hid_read_timeout(d, in, (size_t)size, timeout_ms);
        double rt = now_s() - t;
        if (r < 0) die("hid_read_timeout, round %d: %ls", k, hid_error(d));
        if (r == 0) die("no input report within %d ms in round %d (is the device echoing?)", timeout_ms, k);
        if (r != size || memcmp(in, out + 1, (size_t)size) != 0)
            die("echo mismatch in round %d: %d bytes back, expected %d", k, r, size);
        if (k >= warmup) rtt[k - warmup] = rt * 1e6;
    }
    hid_close(d);
    hid_exit();

    qsort(rtt, (size_t)count, sizeof *rtt, cmp_double);
    char note_text[64];
    snprintf(note_text, sizeof note_text, "p99=%.0f n=%d", percentile_sorted(rtt, (size_t)count, 99), count);
    emit("hid-echo", "hidapi-c", percentile_sorted(rtt, (size_t)count, 50), "us", note_text);
    free(out); free(in); free(rtt);
    return 0;
}

/* bulk-loopback: raw libusb synchronous ping-pong against a Loopback gadget
 * (bulk OUT echoed on bulk IN): write one chunk, read until the whole chunk
 * is back, compare, repeat. MB/s of verified echoed bytes. The content
 * changes every round so a stale buffer cannot pass the check. */
#define BASELINES_LIBUSB
#include "common.h"

static const char *usage =
    "--vid HEX --pid HEX [--out 0x02] [--in 0x81] [--chunk 4096] [--seconds 3]";

static const unsigned int timeout_ms = 5000;

int main(int argc, char **argv)
{
    prog_name = "bulk-loopback";
    struct opt opts[] = {
        {"vid", NULL}, {"pid", NULL}, {"out", "0x02"}, {"in", "0x81"}, {"chunk", "4096"}, {"seconds", "3"},
    };
    size_t n = sizeof opts / sizeof opts[0];
    parse_opts(argc, argv, opts, n, usage);
    uint16_t vid = (uint16_t)opt_hex(opts, n, "vid", 0xffff);
    uint16_t pid = (uint16_t)opt_hex(opts, n, "pid", 0xffff);
    unsigned char ep_out = (unsigned char)opt_hex(opts, n, "out", 0xff);
    unsigned char ep_in = (unsigned char)opt_hex(opts, n, "in", 0xff);
    int chunk = (int)opt_long(opts, n, "chunk", 1, 16 << 20);
    double seconds = opt_double(opts, n, "seconds", 0.1, 3600);
    if (ep_out & 0x80) die("--out 0x%02x is not an OUT endpoint", ep_out);
    if (!(ep_in & 0x80)) die("--in 0x%02x is not an IN endpoint", ep_in);

    libusb_context *ctx;
    int r = libusb_init(&ctx);
    if (r != 0) die("libusb_init: %s", libusb_strerror(r));
    libusb_device_handle *h = open_vid_pid(ctx, vid, pid);
    claim_interface0(h);

    unsigned char *out = malloc((size_t)chunk), *in = malloc((size_t)chunk);
    if (!out || !in) die("out of memory");

    /* Same warm-up as bulk-in: the first rounds pay for first-touch costs. */
    const double warmup = 0.5;
    double t0 = now_s(), start = 0, t = t0;
    uint64_t verified = 0, round = 0;
    int measuring = 0;
    for (;;) {
        round++;
        for (int i = 0; i < chunk; i++) out[i] = (unsigned char)(round * 131 + (uint64_t)i * 7);
        int done = 0;
        r = libusb_bulk_transfer(h, ep_out, out, chunk, &done, timeout_ms);
        if (r != 0) die("bulk OUT 0x%02x, round %llu: %s", ep_out, (unsigned long long)round, libusb_strerror(r));
        if (done != chunk) die("bulk OUT 0x%02x, round %llu: wrote %d of %d bytes", ep_out, (unsigned long long)round, done, chunk);
        int got = 0;
        while (got < chunk) {
            int part = 0;
            r = libusb_bulk_transfer(h, ep_in, in + got, chunk - got, &part, timeout_ms);
            if (r != 0) die("bulk IN 0x%02x, round %llu, after %d of %d bytes: %s", ep_in,
                            (unsigned long long)round, got, chunk, libusb_strerror(r));
            got += part;
        }
        if (memcmp(in, out, (size_t)chunk) != 0) {
            int i = 0;
            while (in[i] == out[i]) i++;
            die("echo mismatch in round %llu at byte %d: sent 0x%02x, got 0x%02x",
                (unsigned long long)round, i, out[i], in[i]);
        }
        t = now_s();
        if (measuring) verified += (uint64_t)chunk;
        if (!measuring && t - t0 >= warmup) { measuring = 1; start = t; }
        else if (measuring && t - start >= seconds) break;
    }
    free(out);
    free(in);
    libusb_release_interface(h, 0);
    libusb_close(h);
    libusb_exit(ctx);

    char note_text[64];
    snprintf(note_text, sizeof note_text, "%d", chunk);
    emit("bulk-loopback", "libusb-c", (double)verified / (t - start) / 1e6, "MB/s", note_text);
    return 0;
}

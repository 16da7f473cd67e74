/* bulk-in and bulk-out (built from this file, -DBULK_OUT for the second):
 * raw libusb asynchronous bulk throughput, the baseline for devif's IN and
 * OUT streams and push readers. N transfers stay in flight, each
 * resubmitted from its own callback; the main thread runs libusb's event
 * loop. After a warm-up, the bytes of transfers completed within --seconds
 * are counted. OUT sends zeroed buffers: SourceSink's sink (pattern 0, the
 * default) takes zeros and stalls on anything else. */
#define BASELINES_LIBUSB
#include "common.h"

#ifdef BULK_OUT
#define NAME "bulk-out"
#define DIRECTION "OUT"
#define DEFAULT_ENDPOINT "0x01"
#define MODE_OPTION ""
#else
#define NAME "bulk-in"
#define DIRECTION "IN"
#define DEFAULT_ENDPOINT "0x81"
/* devif's side reads in push mode or as an AsyncSequence; raw libusb has one way. */
#define MODE_OPTION " [--mode push|stream|stream-on-completions]"
#endif

static const char *usage =
    "--vid HEX --pid HEX [--endpoint " DEFAULT_ENDPOINT "] [--transfer-size 16384] [--transfers 8] [--seconds 3]" MODE_OPTION;

static volatile int stopping;      /* set once: no more resubmits */
static int in_flight;              /* transfers submitted and not yet called back */
static int measuring;
static uint64_t bytes_counted;
static int failed_status = -1;     /* first transfer status that was not COMPLETED */

static void LIBUSB_CALL on_done(struct libusb_transfer *t)
{
    in_flight--;
    if (t->status != LIBUSB_TRANSFER_COMPLETED) {
        if (!(stopping && t->status == LIBUSB_TRANSFER_CANCELLED) && failed_status < 0)
            failed_status = t->status;
        return;
    }
    if (measuring) bytes_counted += (uint64_t)t->actual_length;
    if (stopping) return;
    int r = libusb_submit_transfer(t);
    if (r != 0) {
        if (failed_status < 0) failed_status = LIBUSB_TRANSFER_ERROR;
        note("resubmit failed: %s", libusb_strerror(r));
        return;
    }
    in_flight++;
}

int main(int argc, char **argv)
{
    prog_name = NAME;
    struct opt opts[] = {
        {"vid", NULL}, {"pid", NULL}, {"endpoint", DEFAULT_ENDPOINT}, {"transfer-size", "16384"},
        {"transfers", "8"}, {"seconds", "3"},
        {"mode", "push"},  /* bulk-in's --mode: accepted, ignored */
    };
    size_t n = sizeof opts / sizeof opts[0];
    parse_opts(argc, argv, opts, n, usage);
    uint16_t vid = (uint16_t)opt_hex(opts, n, "vid", 0xffff);
    uint16_t pid = (uint16_t)opt_hex(opts, n, "pid", 0xffff);
    unsigned char ep = (unsigned char)opt_hex(opts, n, "endpoint", 0xff);
    int size = (int)opt_long(opts, n, "transfer-size", 1, 16 << 20);
    int count = (int)opt_long(opts, n, "transfers", 1, 1024);
    double seconds = opt_double(opts, n, "seconds", 0.1, 3600);
    if (!(ep & 0x80) != !strcmp(DIRECTION, "OUT")) die("--endpoint 0x%02x is not an " DIRECTION " endpoint", ep);

    libusb_context *ctx;
    int r = libusb_init(&ctx);
    if (r != 0) die("libusb_init: %s", libusb_strerror(r));
    libusb_device_handle *h = open_vid_pid(ctx, vid, pid);
    claim_interface0(h);

    struct libusb_transfer **ts = calloc((size_t)count, sizeof *ts);
    if (!ts) die("out of memory");
    for (int i = 0; i < count; i++) {
        unsigned char *buf = malloc((size_t)size);
        ts[i] = libusb_alloc_transfer(0);
        if (!buf || !ts[i]) die("out of memory");
        memset(buf, 0, (size_t)size);
        libusb_fill_bulk_transfer(ts[i], h, ep, buf, size, on_done, NULL, 0);
        r = libusb_submit_transfer(ts[i]);
        if (r != 0) die("submit transfer %d on endpoint 0x%02x failed: %s", i, ep, libusb_strerror(r));
        in_flight++;
    }

    const double warmup = 0.5;
    double t0 = now_s(), start = 0, end = 0;
    /* The loop wakes at least every 50 ms to look at the clock. */
    struct timeval tick = {0, 50000};
    while (!stopping) {
        r = libusb_handle_events_timeout_completed(ctx, &tick, NULL);
        if (r != 0 && r != LIBUSB_ERROR_INTERRUPTED) die("event loop: %s", libusb_strerror(r));
        if (failed_status >= 0) die("bulk " DIRECTION " transfer on 0x%02x failed: %s", ep,
                                    libusb_error_name(failed_status) /* also names transfer statuses */);
        if (in_flight == 0) die("no transfer in flight any more");
        double t = now_s();
        if (!measuring && t - t0 >= warmup) { measuring = 1; start = t; bytes_counted = 0; }
        else if (measuring && t - start >= seconds) { end = t; measuring = 0; stopping = 1; }
    }
    /* Drain: cancel what is still queued and let the callbacks run. */
    for (int i = 0; i < count; i++) libusb_cancel_transfer(ts[i]);
    double drain_deadline = now_s() + 5;
    while (in_flight > 0) {
        if (now_s() > drain_deadline) die("%d transfers still pending 5 s after cancel", in_flight);
        libusb_handle_events_timeout_completed(ctx, &tick, NULL);
    }
    for (int i = 0; i < count; i++) { free(ts[i]->buffer); libusb_free_transfer(ts[i]); }
    free(ts);
    libusb_release_interface(h, 0);
    libusb_close(h);
    libusb_exit(ctx);

    char note_text[64];
    snprintf(note_text, sizeof note_text, "%dx%d", count, size);
    emit(NAME, "libusb-c", (double)bytes_counted / (end - start) / 1e6, "MB/s", note_text);
    return 0;
}

/* Shared by the C baselines: options, clock, JSON sample lines, opening a
 * USB device by VID/PID with a reason when it fails. Header-only so each
 * program stays one gcc call. */
#ifndef BASELINES_COMMON_H
#define BASELINES_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *prog_name = "baseline";

__attribute__((noreturn, format(printf, 1, 2)))
static inline void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", prog_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

__attribute__((format(printf, 1, 2)))
static inline void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One sample line; a single write so concurrent writers never interleave. */
static inline void emit(const char *measure, const char *impl, double value, const char *unit, const char *note_text)
{
    char line[512];
    int n;
    if (note_text)
        n = snprintf(line, sizeof line,
                     "{\"impl\":\"%s\",\"measure\":\"%s\",\"note\":\"%s\",\"unit\":\"%s\",\"value\":%.6g}\n",
                     impl, measure, note_text, unit, value);
    else
        n = snprintf(line, sizeof line,
                     "{\"impl\":\"%s\",\"measure\":\"%s\",\"unit\":\"%s\",\"value\":%.6g}\n",
                     impl, measure, unit, value);
    if (n < 0 || (size_t)n >= sizeof line) die("sample line too long");
    fwrite(line, 1, (size_t)n, stdout);
    fflush(stdout);
}

/* ---- options: every program takes "--name VALUE" pairs only ---- */

struct opt {
    const char *name;   /* without the leading -- */
    const char *value;  /* default, replaced by the command line */
};

static inline void parse_opts(int argc, char **argv, struct opt *opts, size_t n, const char *usage)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s %s\n", prog_name, usage);
            exit(0);
        }
        if (strncmp(argv[i], "--", 2) != 0) die("unexpected argument '%s' (usage: %s %s)", argv[i], prog_name, usage);
        size_t k = 0;
        for (; k < n; k++)
            if (!strcmp(argv[i] + 2, opts[k].name)) break;
        if (k == n) die("unknown option '%s' (usage: %s %s)", argv[i], prog_name, usage);
        if (i + 1 >= argc) die("option '%s' needs a value", argv[i]);
        opts[k].value = argv[++i];
    }
    for (size_t k = 0; k < n; k++)
        if (!opts[k].value) die("missing --%s (usage: %s %s)", opts[k].name, prog_name, usage);
}

static inline const char *opt_str(struct opt *opts, size_t n, const char *name)
{
    for (size_t k = 0; k < n; k++)
        if (!strcmp(opts[k].name, name)) return opts[k].value;
    die("internal: no option %s", name);
}

/* Hex with or without 0x, within [0, max]. */
static inline unsigned long opt_hex(struct opt *opts, size_t n, const char *name, unsigned long max)
{
    const char *s = opt_str(opts, n, name);
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 16);
    if (errno || end == s || *end || v > max) die("--%s: '%s' is not a hex number up to 0x%lx", name, s, max);
    return v;
}

static inline long opt_long(struct opt *opts, size_t n, const char *name, long min, long max)
{
    const char *s = opt_str(opts, n, name);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || end == s || *end || v < min || v > max) die("--%s: '%s' is not a number in %ld...%ld", name, s, min, max);
    return v;
}

static inline double opt_double(struct opt *opts, size_t n, const char *name, double min, double max)
{
    const char *s = opt_str(opts, n, name);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) die("--%s: '%s' is not a number in %g...%g", name, s, min, max);
    return v;
}

/* Nearest-rank percentile (p in 0..100) of a sorted array: the same rule
 * devif-bench uses (Samples.swift), so medians compare like for like. */
static inline double percentile_sorted(const double *sorted, size_t n, double p)
{
    double exact = p / 100.0 * (double)n;
    long rank = (long)exact;
    if ((double)rank < exact) rank++;   /* ceil, without libm */
    rank -= 1;
    if (rank < 0) rank = 0;
    if ((size_t)rank >= n) rank = (long)n - 1;
    return sorted[rank];
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#ifdef BASELINES_LIBUSB
#include <libusb.h>

/* Opens the first device with this VID/PID. Unlike
 * libusb_open_device_with_vid_pid, says why when it cannot. */
static inline libusb_device_handle *open_vid_pid(libusb_context *ctx, uint16_t vid, uint16_t pid)
{
    libusb_device **list;
    ssize_t count = libusb_get_device_list(ctx, &list);
    if (count < 0) die("cannot list USB devices: %s", libusb_strerror((int)count));
    libusb_device_handle *h = NULL;
    int found = 0, err = 0;
    for (ssize_t i = 0; i < count && !h; i++) {
        struct libusb_device_descriptor d;
        if (libusb_get_device_descriptor(list[i], &d) != 0) continue;
        if (d.idVendor != vid || d.idProduct != pid) continue;
        found = 1;
        err = libusb_open(list[i], &h);
    }
    libusb_free_device_list(list, 1);
    if (!found) die("device %04x:%04x not found (%zd USB devices present)", vid, pid, count);
    if (!h) die("open %04x:%04x failed: %s", vid, pid, libusb_strerror(err));
    return h;
}

/* Claims interface 0, detaching a kernel driver if one has it. */
static inline void claim_interface0(libusb_device_handle *h)
{
    int r = libusb_set_auto_detach_kernel_driver(h, 1);
    if (r != 0 && r != LIBUSB_ERROR_NOT_SUPPORTED) die("auto-detach kernel driver: %s", libusb_strerror(r));
    r = libusb_claim_interface(h, 0);
    if (r != 0) die("claim interface 0 failed: %s", libusb_strerror(r));
}
#endif

#endif

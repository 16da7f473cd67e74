/* Shared helpers for the devlab device-side programs (hidg, uhid, churn, ffs):
 * hex parsing, the report script format, the ready pipe and signals.
 * Kept header-only so build.sh stays one gcc call per program; inline so a
 * program that uses only some of them builds without unused warnings. */
#ifndef DEVLAB_COMMON_H
#define DEVLAB_COMMON_H

#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *prog_name = "devlab";
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) { (void)sig; stop_requested = 1; }

/* SIGTERM/SIGINT must interrupt blocking read()/write() (no SA_RESTART)
 * so that devlab can stop us while we wait on the kernel. */
static inline void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static inline void logmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static inline _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", prog_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static inline long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Parses hex digits, ignoring spaces, ':' , ',' and an optional 0x before
 * each byte pair. Returns the byte count or -1 on a malformed string. */
static inline long parse_hex(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;
    while (*s) {
        if (isspace((unsigned char)*s) || *s == ':' || *s == ',' || *s == '-') { s++; continue; }
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && hexval(s[2]) >= 0 && hexval(s[3]) >= 0) s += 2;
        int hi = hexval((unsigned char)s[0]);
        int lo = hi >= 0 ? hexval((unsigned char)s[1]) : -1;
        if (hi < 0 || lo < 0) return -1;
        if (n >= cap) return -1;
        out[n++] = (unsigned char)(hi << 4 | lo);
        s += 2;
    }
    return (long)n;
}

/* A report script: one step per line, either a report (hex bytes) or
 * "delay_ms N". Blank lines and lines starting with '#' are ignored. */
struct step { int delay_ms; size_t len; unsigned char *data; };
struct script { struct step *steps; size_t count; };

static inline void load_script(const char *path, struct script *sc, size_t max_report)
{
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open script %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    sc->steps = NULL;
    sc->count = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1])) *--end = 0;
        if (!*p || *p == '#') continue;
        struct step st = { 0, 0, NULL };
        if (strncmp(p, "delay_ms", 8) == 0) {
            char *q = p + 8, *e;
            while (*q == ' ' || *q == '\t' || *q == '=' || *q == ':') q++;
            long v = strtol(q, &e, 10);
            if (e == q || *e || v < 0 || v > 3600000) die("%s:%u: bad delay_ms line", path, lineno);
            st.delay_ms = (int)v;
        } else {
            st.data = malloc(max_report);
            if (!st.data) die("out of memory");
            long n = parse_hex(p, st.data, max_report);
            if (n <= 0) die("%s:%u: not a hex report of 1..%zu bytes", path, lineno, max_report);
            st.len = (size_t)n;
        }
        sc->steps = realloc(sc->steps, (sc->count + 1) * sizeof *sc->steps);
        if (!sc->steps) die("out of memory");
        sc->steps[sc->count++] = st;
    }
    free(line);
    fclose(f);
}

/* True when a HID report descriptor declares Report IDs (a 0x85 short
 * item). Without them, the HID core hands out output reports with a
 * placeholder 0 byte in front, which is not part of the report. */
static inline int rdesc_has_report_ids(const unsigned char *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char p = d[i];
        if (p == 0xFE) {                       /* long item: FE size tag data */
            if (i + 1 >= n) break;
            i += 3 + d[i + 1];
            continue;
        }
        size_t size = (p & 3) == 3 ? 4 : (p & 3);
        if ((p & 0xFC) == 0x84) return 1;      /* Global: Report ID */
        i += 1 + size;
    }
    return 0;
}

/* Tells the parent (devlab) that the device side is ready, then closes the pipe. */
static inline void signal_ready(int fd, const char *detail)
{
    if (fd < 0) return;
    char msg[256];
    int n = snprintf(msg, sizeof msg, "ready %s\n", detail);
    if (write(fd, msg, (size_t)n) < 0) logmsg("ready pipe: %s", strerror(errno));
    close(fd);
}

#endif

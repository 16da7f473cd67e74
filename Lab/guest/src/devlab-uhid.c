/* devlab-uhid: a HID device that is not on USB, made through /dev/uhid.
 *
 *   devlab-uhid [--name S] [--phys S] [--uniq S] [--vid HEX] [--pid HEX]
 *               [--version HEX] [--country N] [--bus N] --rdesc HEX
 *               [--mode echo|script:FILE|none] [--ready-fd FD]
 *
 * The device lives as long as this process: UHID_CREATE2 at start,
 * UHID_DESTROY on SIGTERM/SIGINT (closing /dev/uhid would also destroy it).
 * echo:   UHID_OUTPUT (a hidraw write of an output report) comes back as
 *         UHID_INPUT2 with the same report (without Report IDs in the
 *         descriptor, the HID core's leading 0 placeholder is dropped, as
 *         usbhid does on USB; with them, the ID byte is kept).
 * script: 100 ms after the device is first opened (UHID_OPEN: someone
 *         opened the hidraw node; see the comment at UHID_OPEN for the
 *         delay), or at the first output report if that comes first
 *         (the trigger USB HID gadgets need), sends the script's reports
 *         with its delays.
 * All modes answer UHID_SET_REPORT (stores the bytes per type and report
 * number) and UHID_GET_REPORT (returns what was stored, else zeros), so
 * feature-report calls never hang for the kernel's 5 s timeout. An echoed
 * input report is also stored as the input report of its number, so
 * GET_REPORT(Input) (hidraw's HIDIOCGINPUT) returns the last one sent. */
#include "common.h"
#include <fcntl.h>
#include <linux/uhid.h>
#include <poll.h>
#include <stdint.h>

static unsigned char *stored[3][256];
static uint16_t stored_len[3][256];

static int send_event(int fd, struct uhid_event *ev)
{
    for (;;) {
        ssize_t n = write(fd, ev, sizeof *ev);
        if (n == (ssize_t)sizeof *ev) return 0;
        if (n < 0 && errno == EINTR) continue;
        logmsg("write to /dev/uhid (event %u): %s", ev->type, n < 0 ? strerror(errno) : "short write");
        return -1;
    }
}

static void copy_str(char *dst, size_t cap, const char *src, const char *what)
{
    if (strlen(src) >= cap) die("%s is %zu bytes; struct uhid_create2_req allows %zu", what, strlen(src), cap - 1);
    memcpy(dst, src, strlen(src) + 1);
}

static unsigned long parse_num(const char *s, int base, const char *what)
{
    char *e;
    errno = 0;
    unsigned long v = strtoul(s, &e, base);
    if (errno || e == s || *e) die("bad %s '%s'", what, s);
    return v;
}

int main(int argc, char **argv)
{
    prog_name = "devlab-uhid";
    static struct uhid_event ev;
    const char *name = "devlab uhid", *phys = "", *uniq = "", *rdesc = NULL, *mode = "echo";
    unsigned long vid = 0x1209, pid = 0x0001, version = 0x0100, country = 0, bus = 0x06;
    int ready_fd = -1;
    long report_len = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) die("argument '%s' needs a value", a);
        if (!strcmp(a, "--name")) name = v;
        else if (!strcmp(a, "--phys")) phys = v;
        else if (!strcmp(a, "--uniq")) uniq = v;
        else if (!strcmp(a, "--vid")) vid = parse_num(v, 16, "--vid");
        else if (!strcmp(a, "--pid")) pid = parse_num(v, 16, "--pid");
        else if (!strcmp(a, "--version")) version = parse_num(v, 16, "--version");
        else if (!strcmp(a, "--country")) country = parse_num(v, 0, "--country");
        else if (!strcmp(a, "--bus")) bus = parse_num(v, 0, "--bus");
        else if (!strcmp(a, "--rdesc")) rdesc = v;
        else if (!strcmp(a, "--mode")) mode = v;
        else if (!strcmp(a, "--report-len")) report_len = (long)parse_num(v, 0, "--report-len");
        else if (!strcmp(a, "--ready-fd")) ready_fd = (int)parse_num(v, 0, "--ready-fd");
        else die("unknown argument '%s' (see the comment at the top of devlab-uhid.c)", a);
        i++;
    }
    if (!rdesc) die("--rdesc HEX is required");
    if (vid > 0xffff || pid > 0xffff || bus > 0xffff) die("--vid, --pid and --bus are 16-bit values");
    (void)report_len;

    struct script sc = { NULL, 0 };
    int echo = 0;
    if (!strcmp(mode, "echo")) echo = 1;
    else if (!strncmp(mode, "script:", 7)) load_script(mode + 7, &sc, UHID_DATA_MAX);
    else if (strcmp(mode, "none")) die("unknown --mode '%s' (echo, script:FILE or none)", mode);

    install_signals();
    setvbuf(stderr, NULL, _IOLBF, 0);
    int fd = open("/dev/uhid", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("cannot open /dev/uhid: %s (is the uhid module loaded? devlab init does it)", strerror(errno));

    memset(&ev, 0, sizeof ev);
    ev.type = UHID_CREATE2;
    copy_str((char *)ev.u.create2.name, sizeof ev.u.create2.name, name, "--name");
    copy_str((char *)ev.u.create2.phys, sizeof ev.u.create2.phys, phys, "--phys");
    copy_str((char *)ev.u.create2.uniq, sizeof ev.u.create2.uniq, uniq, "--uniq");
    long rn = parse_hex(rdesc, ev.u.create2.rd_data, sizeof ev.u.create2.rd_data);
    if (rn <= 0) die("--rdesc is not 1..%zu hex bytes", sizeof ev.u.create2.rd_data);
    ev.u.create2.rd_size = (uint16_t)rn;
    int has_ids = rdesc_has_report_ids(ev.u.create2.rd_data, (size_t)rn);
    ev.u.create2.bus = (uint16_t)bus;
    ev.u.create2.vendor = (uint32_t)vid;
    ev.u.create2.product = (uint32_t)pid;
    ev.u.create2.version = (uint32_t)version;
    ev.u.create2.country = (uint32_t)country;
    if (send_event(fd, &ev) < 0) die("UHID_CREATE2 failed");

    size_t next = 0;
    long long step_due = 0;
    int started = 0, opened = 0, script_live = 0, ready_sent = 0;
    long long ready_deadline = now_ms() + 5000;
    unsigned long long echoed = 0;
    while (!stop_requested) {
        int wait_ms = -1;
        if (!ready_sent) {
            long long left = ready_deadline - now_ms();
            if (left <= 0) {
                /* No driver started us (e.g. a report descriptor the HID
                 * core rejects): the device exists but has no hidraw. */
                signal_ready(ready_fd, "nostart");
                ready_sent = 1;
            } else wait_ms = (int)left;
        }
        if (script_live && next < sc.count) {
            long long left = step_due - now_ms();
            if (left <= 0) {
                struct step *st = &sc.steps[next++];
                if (st->data) {
                    memset(&ev, 0, sizeof ev);
                    ev.type = UHID_INPUT2;
                    ev.u.input2.size = (uint16_t)st->len;
                    memcpy(ev.u.input2.data, st->data, st->len);
                    send_event(fd, &ev);
                    step_due = now_ms();
                } else step_due = now_ms() + st->delay_ms;
                continue;
            }
            if (wait_ms < 0 || left < wait_ms) wait_ms = (int)left;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, wait_ms);
        if (r < 0) { if (errno == EINTR) continue; die("poll: %s", strerror(errno)); }
        if (r == 0) continue;
        ssize_t n = read(fd, &ev, sizeof ev);
        if (n < 0) { if (errno == EINTR || errno == EAGAIN) continue; die("read /dev/uhid: %s", strerror(errno)); }
        switch (ev.type) {
        case UHID_START:
            started = 1;
            if (!ready_sent) { signal_ready(ready_fd, "started"); ready_sent = 1; }
            break;
        case UHID_STOP: started = 0; break;
        case UHID_OPEN:
            opened++;
            /* hidraw_open() asks the driver to open (UHID_OPEN) before it adds
             * its reader to the list that input reports go to: a report sent
             * at once can be dropped. Start the script 100 ms later. */
            if (!script_live && sc.count) { script_live = 1; step_due = now_ms() + 100; }
            break;
        case UHID_CLOSE: if (opened) opened--; break;
        case UHID_OUTPUT:
            /* An output report also starts a script (same trigger as USB). */
            if (!script_live && sc.count) { script_live = 1; step_due = now_ms(); }
            if (echo) {
                uint16_t size = ev.u.output.size;
                if (size > UHID_DATA_MAX) size = UHID_DATA_MAX;
                unsigned char tmp[UHID_DATA_MAX];
                /* Without report IDs, data[0] is the HID core's placeholder 0:
                 * strip it, so the input report has what the writer sent. */
                size_t skip = !has_ids && size > 0 ? 1 : 0;
                size -= (uint16_t)skip;
                memcpy(tmp, ev.u.output.data + skip, size);
                memset(&ev, 0, sizeof ev);
                ev.type = UHID_INPUT2;
                ev.u.input2.size = size;
                memcpy(ev.u.input2.data, tmp, size);
                if (send_event(fd, &ev) == 0) echoed++;
                /* The current input report of its number, for GET_REPORT(Input). */
                unsigned char rn = has_ids && size > 0 ? tmp[0] : 0;
                free(stored[UHID_INPUT_REPORT][rn]);
                stored[UHID_INPUT_REPORT][rn] = malloc(size ? size : 1);
                if (stored[UHID_INPUT_REPORT][rn]) { memcpy(stored[UHID_INPUT_REPORT][rn], tmp, size); stored_len[UHID_INPUT_REPORT][rn] = size; }
                else stored_len[UHID_INPUT_REPORT][rn] = 0;
            }
            break;
        case UHID_SET_REPORT: {
            uint32_t id = ev.u.set_report.id;
            unsigned t = ev.u.set_report.rtype < 3 ? ev.u.set_report.rtype : 0;
            unsigned char rnum = ev.u.set_report.rnum;
            uint16_t size = ev.u.set_report.size > UHID_DATA_MAX ? UHID_DATA_MAX : ev.u.set_report.size;
            free(stored[t][rnum]);
            stored[t][rnum] = malloc(size ? size : 1);
            if (stored[t][rnum]) { memcpy(stored[t][rnum], ev.u.set_report.data, size); stored_len[t][rnum] = size; }
            memset(&ev, 0, sizeof ev);
            ev.type = UHID_SET_REPORT_REPLY;
            ev.u.set_report_reply.id = id;
            ev.u.set_report_reply.err = 0;
            send_event(fd, &ev);
            break;
        }
        case UHID_GET_REPORT: {
            uint32_t id = ev.u.get_report.id;
            unsigned t = ev.u.get_report.rtype < 3 ? ev.u.get_report.rtype : 0;
            unsigned char rnum = ev.u.get_report.rnum;
            memset(&ev, 0, sizeof ev);
            ev.type = UHID_GET_REPORT_REPLY;
            ev.u.get_report_reply.id = id;
            ev.u.get_report_reply.err = 0;
            if (stored[t][rnum]) {
                ev.u.get_report_reply.size = stored_len[t][rnum];
                memcpy(ev.u.get_report_reply.data, stored[t][rnum], stored_len[t][rnum]);
            } else {
                long len = report_len > 0 && report_len < UHID_DATA_MAX ? report_len : 64;
                ev.u.get_report_reply.size = (uint16_t)(rnum ? len + 1 : len);
                ev.u.get_report_reply.data[0] = rnum;
            }
            send_event(fd, &ev);
            break;
        }
        default: break;
        }
    }
    (void)started;
    memset(&ev, 0, sizeof ev);
    ev.type = UHID_DESTROY;
    send_event(fd, &ev);
    logmsg("destroyed after %llu echoed reports", echoed);
    close(fd);
    return 0;
}

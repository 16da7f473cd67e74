/* plug-arrival: time from binding a gadget to its UDC (a real USB connect
 * on dummy_hcd) to libusb's hotplug ARRIVED callback. libusb built with
 * udev learns of devices from udevd, so this includes udev's processing.
 * The event loop runs on a thread of its own; the main thread plugs and
 * unplugs through configfs and waits on a condition variable (bounded). */
#define BASELINES_LIBUSB
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

static const char *usage =
    "--gadget /sys/kernel/config/usb_gadget/devlab-NAME --udc dummy_udc.K --vid HEX --pid HEX [--count 10]";

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed;
static unsigned arrivals, departures;   /* callbacks seen, under lock */
static double last_arrival;             /* CLOCK_MONOTONIC at the last ARRIVED callback */
static volatile int loop_stop;
static libusb_context *ctx;

static int LIBUSB_CALL on_hotplug(libusb_context *c, libusb_device *dev, libusb_hotplug_event ev, void *user)
{
    (void)c; (void)dev; (void)user;
    double t = now_s();   /* first thing: the callback's moment is the measure */
    pthread_mutex_lock(&lock);
    if (ev == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED) { arrivals++; last_arrival = t; }
    else departures++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    return 0;
}

static void *event_loop(void *arg)
{
    (void)arg;
    while (!loop_stop) {
        int r = libusb_handle_events_completed(ctx, (int *)&loop_stop);
        if (r != 0 && r != LIBUSB_ERROR_INTERRUPTED) { note("event loop: %s", libusb_strerror(r)); break; }
    }
    return NULL;
}

/* Waits until *counter differs from `seen`, at most `limit` seconds. */
static int wait_count(unsigned *counter, unsigned seen, double limit)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)limit;
    int ok = 1;
    pthread_mutex_lock(&lock);
    while (*counter == seen) {
        if (pthread_cond_timedwait(&changed, &lock, &deadline) == ETIMEDOUT) { ok = *counter != seen; break; }
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

static unsigned read_count(unsigned *counter)
{
    pthread_mutex_lock(&lock);
    unsigned v = *counter;
    pthread_mutex_unlock(&lock);
    return v;
}

static void write_udc(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    char line[128];
    int len = snprintf(line, sizeof line, "%s\n", value);
    if (write(fd, line, (size_t)len) != len) die("write '%s' to %s: %s", value, path, strerror(errno));
    close(fd);
}

/* The gadget's UDC file: empty when unplugged. */
static int gadget_bound(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) die("open %s: %s", path, strerror(errno));
    char buf[128] = "";
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    return buf[0] != 0 && buf[0] != '\n';
}

static int device_present(uint16_t vid, uint16_t pid)
{
    libusb_device **list;
    ssize_t n = libusb_get_device_list(ctx, &list);
    if (n < 0) die("cannot list USB devices: %s", libusb_strerror((int)n));
    int found = 0;
    for (ssize_t i = 0; i < n; i++) {
        struct libusb_device_descriptor d;
        if (libusb_get_device_descriptor(list[i], &d) == 0 && d.idVendor == vid && d.idProduct == pid) found = 1;
    }
    libusb_free_device_list(list, 1);
    return found;
}

int main(int argc, char **argv)
{
    prog_name = "plug-arrival";
    struct opt opts[] = { {"gadget", NULL}, {"udc", NULL}, {"vid", NULL}, {"pid", NULL}, {"count", "10"} };
    size_t n = sizeof opts / sizeof opts[0];
    parse_opts(argc, argv, opts, n, usage);
    const char *gadget = opt_str(opts, n, "gadget");
    const char *udc = opt_str(opts, n, "udc");
    uint16_t vid = (uint16_t)opt_hex(opts, n, "vid", 0xffff);
    uint16_t pid = (uint16_t)opt_hex(opts, n, "pid", 0xffff);
    int count = (int)opt_long(opts, n, "count", 1, 100000);
    const double limit = 20;
    char udc_path[4096];
    snprintf(udc_path, sizeof udc_path, "%s/UDC", gadget);
    if (access(udc_path, W_OK) != 0) die("gadget %s: %s is not writable: %s", gadget, udc_path, strerror(errno));

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&changed, &ca);

    int r = libusb_init(&ctx);
    if (r != 0) die("libusb_init: %s", libusb_strerror(r));
    if (!libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG)) die("this libusb has no hotplug support");
    libusb_hotplug_callback_handle cb;
    r = libusb_hotplug_register_callback(ctx,
        LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT, 0,
        vid, pid, LIBUSB_HOTPLUG_MATCH_ANY, on_hotplug, NULL, &cb);
    if (r != 0) die("register hotplug callback: %s", libusb_strerror(r));
    pthread_t th;
    if (pthread_create(&th, NULL, event_loop, NULL) != 0) die("cannot start the event thread");

    /* Start unplugged. If libusb knows the device, wait for it to leave. */
    if (gadget_bound(udc_path)) {
        unsigned seen = read_count(&departures);
        int known = device_present(vid, pid);
        write_udc(udc_path, "");
        if (known && !wait_count(&departures, seen, limit))
            die("%04x:%04x did not leave within %.0f s of unbinding %s", vid, pid, limit, gadget);
    } else if (device_present(vid, pid)) {
        die("a device %04x:%04x is present but gadget %s is unbound: another device has these ids", vid, pid, gadget);
    }

    for (int k = 0; k < count; k++) {
        unsigned seen = read_count(&arrivals);
        double t = now_s();
        write_udc(udc_path, udc);
        if (!wait_count(&arrivals, seen, limit))
            die("plug %d: no ARRIVED callback for %04x:%04x within %.0f s of writing %s to %s (is udevd running?)",
                k + 1, vid, pid, limit, udc, udc_path);
        pthread_mutex_lock(&lock);
        double ms = (last_arrival - t) * 1e3;
        pthread_mutex_unlock(&lock);
        emit("plug-arrival", "libusb-c", ms, "ms", NULL);
        seen = read_count(&departures);
        write_udc(udc_path, "");
        if (!wait_count(&departures, seen, limit))
            die("plug %d: no LEFT callback for %04x:%04x within %.0f s of unbinding", k + 1, vid, pid, limit);
    }

    loop_stop = 1;
    libusb_hotplug_deregister_callback(ctx, cb);   /* also wakes the event loop */
    libusb_interrupt_event_handler(ctx);
    pthread_join(th, NULL);
    libusb_exit(ctx);
    return 0;
}

/* devlab-ffs: the device side of a FunctionFS gadget ("ffs" devices).
 *
 *   devlab-ffs --dir MOUNTPOINT [--guid TEXT] [--property sz|multi]
 *              [--compat-id ID] [--ready-fd FD]
 *
 * Writes to MOUNTPOINT/ep0 the descriptors of one vendor-specific interface
 * (class ff, bulk IN 0x81 and OUT 0x02, full and high speed) and, with
 * --guid, MS OS 1.0 descriptors for it: an extended compat ID (default
 * WINUSB) and an extended property DeviceInterfaceGUID (REG_SZ, --property
 * sz, the default) or DeviceInterfaceGUIDs (REG_MULTI_SZ, --property multi).
 * The kernel's composite layer answers the host's MS OS requests itself
 * (string 0xEE, wIndex 4 and 5) when the gadget's configfs os_desc is on;
 * this program only hands the function's part over.
 *
 * Then it reports "ready" on --ready-fd and reads ep0 events (logging each)
 * until SIGTERM. The SETUPs it is given (class and vendor requests to its
 * interface) are stalled, except three vendor requests for the lab's
 * control-transfer tests:
 *   0x41 0xD1 (OUT, data):  stores the data stage (up to 4096 bytes);
 *   0xC1 0xD2 (IN):         returns what 0xD1 stored (at most wLength);
 *   0xD3, either direction: never answered: the host's transfer stays
 *                           pending until it times out or the device is
 *                           unplugged. ep0 is then left alone (a read
 *                           would answer the request) until SIGTERM.
 * The bulk endpoints are not serviced: the device exists to be found, not
 * to move data (a bulk transfer on them stays pending).
 *
 * FunctionFS blob formats: <linux/usb/functionfs.h>. The blob carries the
 * property name and value as 8-bit strings with their NUL; the kernel sends
 * them to the host as UTF-16LE.
 */
#include "common.h"

#include <endian.h>
#include <fcntl.h>
#include <linux/usb/ch9.h>
#include <linux/usb/functionfs.h>
#include <poll.h>
#include <stdint.h>

struct blob { unsigned char data[2048]; size_t len; };

static void put(struct blob *b, const void *p, size_t n)
{
    if (b->len + n > sizeof b->data) die("descriptor blob too large");
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static void put8(struct blob *b, uint8_t v) { put(b, &v, 1); }
static void put16(struct blob *b, uint16_t v) { v = htole16(v); put(b, &v, 2); }
static void put32(struct blob *b, uint32_t v) { v = htole32(v); put(b, &v, 4); }
static void set32(struct blob *b, size_t at, uint32_t v) { v = htole32(v); memcpy(b->data + at, &v, 4); }

/* One interface, two bulk endpoints, at the given max packet size. */
static void put_interface(struct blob *b, uint16_t mps)
{
    put8(b, 9); put8(b, USB_DT_INTERFACE); put8(b, 0); put8(b, 0); put8(b, 2);
    put8(b, 0xff); put8(b, 0); put8(b, 0); put8(b, 1);          /* iInterface: string 1 */
    put8(b, 7); put8(b, USB_DT_ENDPOINT); put8(b, 0x81); put8(b, USB_ENDPOINT_XFER_BULK); put16(b, mps); put8(b, 0);
    put8(b, 7); put8(b, USB_DT_ENDPOINT); put8(b, 0x02); put8(b, USB_ENDPOINT_XFER_BULK); put16(b, mps); put8(b, 0);
}

/* bcdVersion of the blob's MS OS feature descriptors. Not what the host
 * sees (composite sends 0x0100): FunctionFS on Debian's 6.1 rejects 0x0100
 * with EINVAL and accepts only 1 (checked in the lab); later kernels accept
 * 1 with a warning. --os-bcd overrides it. */
static uint16_t os_bcd = 0x0001;

static void build_descriptors(struct blob *b, const char *guid, int multi, const char *compat_id)
{
    uint32_t flags = FUNCTIONFS_HAS_FS_DESC | FUNCTIONFS_HAS_HS_DESC | (guid ? FUNCTIONFS_HAS_MS_OS_DESC : 0);
    put32(b, FUNCTIONFS_DESCRIPTORS_MAGIC_V2);
    put32(b, 0);                                   /* length, set below */
    put32(b, flags);
    put32(b, 3);                                   /* fs_count */
    put32(b, 3);                                   /* hs_count */
    if (guid) put32(b, 2);                         /* os_count: compat ID + properties */
    put_interface(b, 64);
    put_interface(b, 512);
    if (guid) {
        /* Extended compat ID: header (interface, dwLength, bcdVersion, wIndex 4, bCount 1, reserved), one function. */
        put8(b, 0); put32(b, 11 + 24); put16(b, os_bcd); put16(b, 4); put8(b, 1); put8(b, 0);
        put8(b, 0); put8(b, 1);                    /* bFirstInterfaceNumber, Reserved1 = 1 (spec) */
        char id[8] = { 0 };
        strncpy(id, compat_id, sizeof id);
        put(b, id, 8);
        for (int i = 0; i < 8 + 6; i++) put8(b, 0);/* SubCompatibleID, Reserved2 */

        /* Extended properties: header (interface 0, wIndex 5, wCount 1), one property. */
        const char *name = multi ? "DeviceInterfaceGUIDs" : "DeviceInterfaceGUID";
        uint16_t nl = (uint16_t)(strlen(name) + 1);
        uint32_t dl = (uint32_t)strlen(guid) + 1 + (multi ? 1 : 0);   /* REG_MULTI_SZ ends with two NULs */
        uint32_t size = 14 + nl + dl;
        put8(b, 0); put32(b, 11 + size); put16(b, os_bcd); put16(b, 5); put16(b, 1);
        put32(b, size); put32(b, multi ? 7 : 1); put16(b, nl);
        put(b, name, nl);
        put32(b, dl);
        put(b, guid, strlen(guid) + 1);
        if (multi) put8(b, 0);
    }
    set32(b, 4, (uint32_t)b->len);
}

static void build_strings(struct blob *b)
{
    static const char text[] = "devlab ffs interface";
    put32(b, FUNCTIONFS_STRINGS_MAGIC);
    put32(b, 0);
    put32(b, 1);                                   /* str_count */
    put32(b, 1);                                   /* lang_count */
    put16(b, 0x0409);
    put(b, text, sizeof text);
    set32(b, 4, (uint32_t)b->len);
}

static const char *event_name(int type)
{
    switch (type) {
    case FUNCTIONFS_BIND: return "BIND";
    case FUNCTIONFS_UNBIND: return "UNBIND";
    case FUNCTIONFS_ENABLE: return "ENABLE";
    case FUNCTIONFS_DISABLE: return "DISABLE";
    case FUNCTIONFS_SETUP: return "SETUP";
    case FUNCTIONFS_SUSPEND: return "SUSPEND";
    case FUNCTIONFS_RESUME: return "RESUME";
    default: return "?";
    }
}

int main(int argc, char **argv)
{
    prog_name = "devlab-ffs";
    (void)now_ms;          /* common.h helpers this program does not need */
    (void)load_script;
    const char *dir = NULL, *guid = NULL, *compat_id = "WINUSB";
    int multi = 0, ready_fd = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dir") && v) { dir = v; i++; }
        else if (!strcmp(a, "--guid") && v) { guid = v; i++; }
        else if (!strcmp(a, "--property") && v) {
            if (!strcmp(v, "multi")) multi = 1;
            else if (strcmp(v, "sz")) die("--property: sz or multi, not %s", v);
            i++;
        }
        else if (!strcmp(a, "--compat-id") && v) {
            if (strlen(v) > 8) die("--compat-id: at most 8 characters");
            compat_id = v; i++;
        }
        else if (!strcmp(a, "--ready-fd") && v) { ready_fd = atoi(v); i++; }
        else if (!strcmp(a, "--os-bcd") && v) { os_bcd = (uint16_t)strtoul(v, NULL, 16); i++; }
        else die("usage: devlab-ffs --dir MOUNTPOINT [--guid TEXT] [--property sz|multi] [--compat-id ID] [--ready-fd FD]");
    }
    if (!dir) die("--dir is required");
    if (guid && strlen(guid) > 200) die("--guid: at most 200 characters");
    install_signals();

    char path[4096];
    snprintf(path, sizeof path, "%s/ep0", dir);
    int ep0 = open(path, O_RDWR);
    if (ep0 < 0) die("open %s: %s", path, strerror(errno));
    struct blob d = { .len = 0 }, s = { .len = 0 };
    build_descriptors(&d, guid, multi, compat_id);
    build_strings(&s);
    if (write(ep0, d.data, d.len) != (ssize_t)d.len) die("writing descriptors to %s: %s", path, strerror(errno));
    if (write(ep0, s.data, s.len) != (ssize_t)s.len) die("writing strings to %s: %s", path, strerror(errno));
    logmsg("descriptors written (%zu + %zu bytes)%s%s", d.len, s.len, guid ? ", MS OS GUID " : "", guid ? guid : "");
    signal_ready(ready_fd, dir);

    unsigned setups = 0;
    static unsigned char stored[4096];
    size_t stored_len = 0;
    int holding = 0;
    while (!stop_requested) {
        if (holding) { poll(NULL, 0, 100); continue; }
        struct pollfd p = { .fd = ep0, .events = POLLIN };
        int r = poll(&p, 1, -1);
        if (r < 0) { if (errno == EINTR) continue; die("poll: %s", strerror(errno)); }
        struct usb_functionfs_event ev[4];
        ssize_t n = read(ep0, ev, sizeof ev);
        if (n < 0) { if (errno == EINTR || errno == EAGAIN) continue; die("read ep0: %s", strerror(errno)); }
        for (size_t k = 0; k < (size_t)n / sizeof ev[0]; k++) {
            if (ev[k].type == FUNCTIONFS_SETUP) {
                struct usb_ctrlrequest c = ev[k].u.setup;
                setups++;
                uint16_t len = le16toh(c.wLength);
                int vendor = (c.bRequestType & USB_TYPE_MASK) == USB_TYPE_VENDOR;
                if (vendor && c.bRequest == 0xD3) {
                    logmsg("SETUP %u: %02x %02x %04x %04x %04x (held)", setups, c.bRequestType, c.bRequest,
                           le16toh(c.wValue), le16toh(c.wIndex), len);
                    holding = 1;
                    break;
                }
                if (vendor && c.bRequest == 0xD1 && !(c.bRequestType & USB_DIR_IN) && len <= sizeof stored) {
                    ssize_t got = len ? read(ep0, stored, len) : read(ep0, NULL, 0);
                    stored_len = got > 0 ? (size_t)got : 0;
                    logmsg("SETUP %u: %02x %02x %04x %04x %04x (stored %zd bytes)", setups, c.bRequestType, c.bRequest,
                           le16toh(c.wValue), le16toh(c.wIndex), len, got);
                    continue;
                }
                if (vendor && c.bRequest == 0xD2 && (c.bRequestType & USB_DIR_IN)) {
                    size_t n = stored_len < len ? stored_len : len;
                    ssize_t put_n = write(ep0, stored, n);
                    logmsg("SETUP %u: %02x %02x %04x %04x %04x (returned %zd bytes)", setups, c.bRequestType, c.bRequest,
                           le16toh(c.wValue), le16toh(c.wIndex), len, put_n);
                    continue;
                }
                logmsg("SETUP %u: %02x %02x %04x %04x %04x (stalled)", setups, c.bRequestType, c.bRequest,
                       le16toh(c.wValue), le16toh(c.wIndex), len);
                /* Stall: a transfer in the direction opposite to the data stage. */
                if (c.bRequestType & USB_DIR_IN) { if (read(ep0, NULL, 0) < 0) {} }
                else { if (write(ep0, NULL, 0) < 0) {} }
            } else {
                logmsg("event %s", event_name(ev[k].type));
            }
        }
    }
    close(ep0);
    return 0;
}

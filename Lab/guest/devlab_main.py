"""devlab: make, plug and unplug real USB and HID devices inside the lab VM.

USB devices are configfs gadgets on dummy_hcd controllers (each device on
its own UDC, so each on its own host bus); HID devices that are not on USB
come from /dev/uhid. Separate invocations cooperate through a state
directory guarded by flock. Interface and exit codes: Lab/guest/README.md.
Python 3 standard library only; run as root inside the lab VM. The
executable is the small launcher `devlab` next to this module.
"""

import argparse
import errno
import fcntl
import glob
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time

GADGETS = "/sys/kernel/config/usb_gadget"
PREFIX = "devlab-"
TYPES = ("hid", "loopback", "sourcesink", "composite", "uhid", "ffs", "ecm")
FFS_INST_MAX = 39                 # f_fs.c MAX_INST_NAME_LEN 40, with the NUL
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_UDCS = 32
USB_MAX_STRING_LEN = 126          # drivers/usb/gadget/configfs.c usb_string_copy
UHID_NAME_MAX, UHID_PHYS_MAX, UHID_UNIQ_MAX = 127, 63, 63   # uhid_create2_req, minus NUL
BUS_NAMES = {"usb": 0x03, "hil": 0x04, "bluetooth": 0x05, "virtual": 0x06,
             "i2c": 0x18, "host": 0x19, "spi": 0x1C}
FUNC_KIND = {"loopback": "Loopback", "sourcesink": "SourceSink"}

# Exit codes (documented in README.md).
EXIT_ERROR, EXIT_USAGE, EXIT_UNKNOWN, EXIT_NO_UDC, EXIT_MODULE, EXIT_TIMEOUT, EXIT_LIMIT = 1, 2, 3, 4, 5, 6, 7


class DevlabError(Exception):
    """A failure with a one-line message meant for the caller."""

    def __init__(self, message, code=EXIT_ERROR):
        super().__init__(message)
        self.code = code


def warn(msg):
    print(f"devlab: warning: {msg}", file=sys.stderr)


def b2s(b):
    """Bytes from the kernel or argv -> str that round-trips (surrogateescape)."""
    return b.decode("utf-8", "surrogateescape")


def s2b(s):
    return s.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- sysfs/configfs

def read_text(path, default=None):
    try:
        with open(path, "rb") as f:
            return b2s(f.read()).rstrip("\n")
    except OSError:
        return default


def read_bytes(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return default


def write_attr(path, data, what=None):
    """One write() of data (bytes or str) to a sysfs/configfs attribute."""
    if isinstance(data, str):
        data = s2b(data)
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        raise DevlabError(f"cannot open {path}: {e.strerror}") from None
    try:
        n = os.write(fd, data)
        if n != len(data):
            raise DevlabError(f"short write to {path} ({n} of {len(data)} bytes)")
    except OSError as e:
        raise DevlabError(f"writing {what or os.path.basename(path)} ({path}): {e.strerror}") from None
    finally:
        os.close(fd)


def run(argv):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def modprobe(module, *params):
    r = run(["modprobe", module, *params])
    if r.returncode != 0:
        detail = (r.stderr.strip().splitlines() or ["exit status %d" % r.returncode])[-1]
        raise DevlabError(f"kernel module {module} missing or failed to load: {detail}", EXIT_MODULE)


def module_loaded(module):
    return os.path.isdir(f"/sys/module/{module}")


def udc_names():
    try:
        names = os.listdir("/sys/class/udc")
    except OSError:
        return []
    return sorted(names, key=udc_sort_key)


def udc_sort_key(name):
    m = re.match(r"^(.*?)(\d+)$", name)
    return (m.group(1), int(m.group(2))) if m else (name, -1)


def udc_host_root(udc):
    """UDC -> (busnum, root hub sysfs dir) of the host controller wired to it.

    dummy_hcd pairs platform devices dummy_udc.K and dummy_hcd.K; with num=N
    each pair has its own root hub, hence its own bus number.
    """
    m = re.match(r"^dummy_udc\.(\d+)$", udc)
    if not m:
        return None, None
    hcd = f"/sys/devices/platform/dummy_hcd.{m.group(1)}"
    for d in sorted(glob.glob(hcd + "/usb*")):
        bus = read_text(d + "/busnum")
        if bus and bus.isdigit():
            return int(bus), d
    return None, None


def bound_udcs():
    """UDC name -> gadget dir, for every configfs gadget (devlab's or not)."""
    out = {}
    for g in glob.glob(GADGETS + "/*"):
        u = read_text(g + "/UDC", "")
        if u:
            out[u] = g
    return out


# ---------------------------------------------------------------- state

def default_state_dir():
    for d in ("/run/devlab", "/tmp/devlab", "/dev/shm/devlab"):
        try:
            os.makedirs(d, exist_ok=True)
            probe = os.path.join(d, ".probe")
            with open(probe, "w") as f:
                f.write("ok")
            os.unlink(probe)
            return d
        except OSError:
            continue
    raise DevlabError("no writable state directory (tried /run, /tmp, /dev/shm); set DEVLAB_STATE")


class State:
    """The state directory: state.json plus an flock'd lock file.

    Every command that reads or changes state holds the lock; long waits
    (plug/unplug --wait) happen after the lock is released.
    """

    def __init__(self, path):
        self.dir = path
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise DevlabError(f"cannot create state directory {path}: {e.strerror}") from None
        self.file = os.path.join(path, "state.json")
        self.lock_fd = None
        self.data = None

    def __enter__(self):
        self.lock_fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            with open(self.file) as f:
                self.data = json.load(f)
        except FileNotFoundError:
            self.data = {"version": 1, "devices": {}}
        except (OSError, ValueError) as e:
            raise DevlabError(f"state file {self.file} unreadable ({e}); `devlab reset` or delete it") from None
        return self

    def save(self):
        tmp = self.file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)

    def __exit__(self, *exc):
        os.close(self.lock_fd)
        self.lock_fd = None

    @property
    def devices(self):
        return self.data["devices"]

    def get(self, name):
        rec = self.devices.get(name)
        if rec is None:
            known = ", ".join(sorted(self.devices)) or "none"
            raise DevlabError(f"no device named '{name}' (known: {known})", EXIT_UNKNOWN)
        return rec

    def log_path(self, name, tag):
        return os.path.join(self.dir, f"{name}.{tag}.log")


# ---------------------------------------------------------------- daemons

def proc_start_time(pid):
    """Start time (clock ticks since boot) from /proc/PID/stat, or None."""
    stat = read_text(f"/proc/{pid}/stat")
    if not stat:
        return None
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def daemon_alive(d):
    if not d:
        return False
    st = proc_start_time(d["pid"])
    if st is None or st != d["start"]:
        return False
    state = read_text(f"/proc/{d['pid']}/stat", "")
    return ") Z " not in state


def find_bin(args, prog):
    """--bin, else $DEVLAB_BIN, else Lab/.cache/bin: only the first one given is
    looked at, so pointing --bin at an empty folder forces the Python fallback."""
    folder = getattr(args, "bin", None) or os.environ.get("DEVLAB_BIN") or \
        os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", ".cache", "bin")
    p = os.path.join(folder, prog)
    return os.path.realpath(p) if os.access(p, os.X_OK) else None


def spawn_daemon(st, name, tag, args, prog, prog_args, ready_timeout=10.0):
    """Starts a device-side program in its own session; waits for its
    "ready" line on a pipe. Returns {"pid","start","argv","log"}."""
    exe = find_bin(args, prog)
    if exe:
        argv = [exe, *prog_args]
    else:
        warn(f"{prog} binary not found (--bin, $DEVLAB_BIN, Lab/.cache/bin; build with Lab/guest/build.sh); "
             f"using the slower Python implementation")
        launcher = os.path.join(os.path.dirname(os.path.realpath(__file__)), "devlab")
        argv = [sys.executable or "/usr/bin/python3", "-IS", launcher, "_" + prog, *prog_args]
    logp = st.log_path(name, tag)
    r, w = os.pipe()
    with open(logp, "ab") as log:
        try:
            proc = subprocess.Popen(argv + ["--ready-fd", str(w)], pass_fds=(w,), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True)
        except OSError as e:
            os.close(r)
            os.close(w)
            raise DevlabError(f"cannot start {argv[0]}: {e.strerror}") from None
    os.close(w)
    line = b""
    deadline = time.monotonic() + ready_timeout
    try:
        while b"\n" not in line:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                proc.kill()
                raise DevlabError(f"{prog} for '{name}' not ready within {ready_timeout:.0f} s (log: {logp})",
                                  EXIT_TIMEOUT)
            chunk = os.read(r, 256)
            if not chunk:
                proc.wait()
                tail = (read_text(logp, "") or "").strip().splitlines()
                raise DevlabError(f"{prog} for '{name}' exited with status {proc.returncode}: "
                                  f"{tail[-1] if tail else 'no output'}")
            line += chunk
    finally:
        os.close(r)
    start = proc_start_time(proc.pid)
    # Popen would otherwise warn that the child is still running; it is
    # meant to outlive us (reparented to init, which reaps it).
    proc.returncode = 0
    return {"pid": proc.pid, "start": start, "argv": argv, "log": logp,
            "ready": b2s(line).split("\n")[0]}


def stop_daemon(d, timeout=3.0):
    """SIGTERM (then SIGKILL) a recorded daemon, if it is still the same process."""
    if not d or not daemon_alive(d):
        return
    try:
        pidfd = os.pidfd_open(d["pid"])
    except OSError:
        return
    try:
        if proc_start_time(d["pid"]) != d["start"]:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                return
            # A pidfd becomes readable when the process exits (child or not).
            if select.select([pidfd], [], [], wait)[0]:
                return
        raise DevlabError(f"daemon pid {d['pid']} did not exit after SIGKILL")
    finally:
        os.close(pidfd)


# ---------------------------------------------------------------- uevents / waits

def uevent_socket():
    """Kernel uevent netlink socket: wakes our waits when sysfs changes.
    The condition itself is always read from sysfs (ground truth)."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)   # NETLINK_KOBJECT_UEVENT
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((0, 1))
        s.setblocking(False)
        return s
    except OSError:
        return None


def wait_until(cond, timeout, sock, interval=0.05):
    """Calls cond() until it returns a truthy value or timeout passes.
    Wakes on each kernel uevent (or every `interval` s as a fallback)."""
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if r:
            return r
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if sock is None:
            time.sleep(min(left, 0.01))
            continue
        if select.select([sock], [], [], min(left, interval))[0]:
            try:
                while sock.recv(65536):
                    pass
            except (BlockingIOError, OSError):
                pass


# ---------------------------------------------------------------- host side

def hidraw_under(path):
    out = []
    for h in sorted(glob.glob(path + "/*:*:*.*/hidraw/hidraw*"), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0)):
        out.append("/dev/" + os.path.basename(h))
    return out


def usb_host_info(rec):
    """What the host side (kernel, sysfs) shows for a plugged USB gadget."""
    udc = rec.get("udc")
    info = {"name": rec["name"], "type": rec["type"], "udc": udc, "present": False, "ready": False,
            "busnum": None, "devnum": None, "sysfs": None, "port_chain": None, "hidraw": [],
            "hidg": rec.get("hidg", []), "serial": None}
    if not udc:
        return info
    busnum, root = udc_host_root(udc)
    info["busnum"] = busnum
    if not root:
        return info
    devs = [d for d in glob.glob(root + f"/{busnum}-*") if re.match(r"^\d+-[\d.]+$", os.path.basename(d))]
    if not devs:
        return info
    dev = sorted(devs)[0]
    chain = os.path.basename(dev)
    vid, pid = read_text(dev + "/idVendor"), read_text(dev + "/idProduct")
    if vid is None:
        return info
    desc = read_bytes(dev + "/descriptors", b"")
    serial_file = read_bytes(dev + "/serial")
    info.update({
        "present": True,
        "sysfs": "/sys/bus/usb/devices/" + chain,
        "port_chain": chain,
        "devnum": int(read_text(dev + "/devnum", "0") or 0),
        "vid": vid, "pid": pid,
        "bcd": read_text(dev + "/bcdDevice"),
        "speed": read_text(dev + "/speed"),
        "serial": b2s(serial_file.rstrip(b"\n")) if serial_file is not None else None,
        "manufacturer": read_text(dev + "/manufacturer"),
        "product": read_text(dev + "/product"),
        "iSerialNumber": desc[16] if len(desc) >= 18 else None,
        "devnode": "/dev/bus/usb/%03d/%03d" % (busnum, int(read_text(dev + "/devnum", "0") or 0)),
    })
    cfg = read_text(dev + "/bConfigurationValue", "")
    nif = int(read_text(dev + "/bNumInterfaces", "0").strip() or 0) if cfg else 0
    ifaces, hidraw, ready = [], [], bool(cfg)
    why = [] if cfg else ["not configured yet (no bConfigurationValue)"]
    for ipath in sorted(glob.glob(dev + f"/{chain}:*")):
        num = int(read_text(ipath + "/bInterfaceNumber", "0"), 16)
        cls = read_text(ipath + "/bInterfaceClass", "00")
        drv = os.path.realpath(ipath + "/driver")
        eps = []
        for ep in sorted(glob.glob(ipath + "/ep_*")):
            eps.append({"address": "0x" + read_text(ep + "/bEndpointAddress", "00"),
                        "type": read_text(ep + "/type"), "direction": read_text(ep + "/direction"),
                        "wMaxPacketSize": int(read_text(ep + "/wMaxPacketSize", "0"), 16)})
        hr = hidraw_under(ipath)
        if cls == "03":
            # usbhid binds after the interface appears; ready means hidraw exists
            # and its /dev node (devtmpfs) is there too.
            if not hr:
                ready = False
                why.append(f"HID interface {os.path.basename(ipath)} has no hidraw in sysfs (driver: "
                           f"{os.path.basename(drv) if os.path.exists(ipath + '/driver') else 'none'})")
            elif not all(os.path.exists(h) for h in hr):
                ready = False
                why.append(f"{' '.join(hr)} not in /dev yet")
        hidraw += hr
        ifaces.append({"number": num, "class": cls, "subclass": read_text(ipath + "/bInterfaceSubClass"),
                       "protocol": read_text(ipath + "/bInterfaceProtocol"),
                       "driver": os.path.basename(drv) if os.path.exists(ipath + "/driver") else None,
                       "endpoints": eps, "hidraw": hr})
    if len(ifaces) < nif:
        ready = False
        why.append(f"{len(ifaces)} of {nif} interfaces in sysfs")
    if rec.get("vid") and vid != rec["vid"] or rec.get("pid") and pid != rec["pid"]:
        ready = False    # a previous device still on this bus
        why.append(f"bus has {vid}:{pid}, not {rec.get('vid')}:{rec.get('pid')}")
    info.update({"interfaces": ifaces, "hidraw": hidraw, "configured": bool(cfg), "ready": ready})
    if why:
        info["not_ready"] = why
    return info


def uhid_host_info(rec):
    info = {"name": rec["name"], "type": "uhid", "udc": None, "present": False, "ready": False,
            "busnum": None, "devnum": None, "sysfs": None, "port_chain": None, "hidraw": [],
            "serial": rec.get("serial") if rec.get("serial") is not None else None,
            "bus": rec["bus"], "phys": rec["phys"]}
    want_id = "%04X:%08X:%08X" % (rec["bus"], int(rec["vid"], 16), int(rec["pid"], 16))
    best = None
    for d in glob.glob("/sys/devices/virtual/misc/uhid/*:*:*.*"):
        ue = {}
        for line in (read_text(d + "/uevent", "") or "").split("\n"):
            k, _, v = line.partition("=")
            ue[k] = v
        if ue.get("HID_PHYS") != rec["phys"] or ue.get("HID_ID") != want_id:
            continue
        if ue.get("HID_UNIQ", "") != (rec.get("serial") or ""):
            continue
        inst = int(os.path.basename(d).rsplit(".", 1)[1], 16)
        if best is None or inst > best[0]:
            best = (inst, d, ue)
    if best is None:
        return info
    _, d, ue = best
    hr = ["/dev/" + os.path.basename(h) for h in sorted(glob.glob(d + "/hidraw/hidraw*"))]
    info.update({"present": True, "sysfs": "/sys/bus/hid/devices/" + os.path.basename(d),
                 "hid_id": os.path.basename(d), "hidraw": hr, "hid_name": ue.get("HID_NAME"),
                 "driver": os.path.basename(os.path.realpath(d + "/driver")) if os.path.exists(d + "/driver") else None,
                 "ready": bool(hr) and all(os.path.exists(h) for h in hr)})
    if not info["ready"]:
        info["not_ready"] = ["no hidraw in sysfs (HID driver did not bind?)" if not hr else "hidraw not in /dev yet"]
    return info


def host_info(rec):
    return uhid_host_info(rec) if rec["type"] == "uhid" else usb_host_info(rec)


def usb_gone(rec):
    """True when no device is left on the record's host bus."""
    _, root = udc_host_root(rec["udc"]) if rec.get("udc") else (None, None)
    if not root:
        return True
    return not any(re.match(r"^\d+-[\d.]+$", os.path.basename(d)) for d in glob.glob(root + "/*-*"))


# ---------------------------------------------------------------- gadgets

def parse_hex16(s, what):
    try:
        v = int(s, 16)
    except ValueError:
        raise DevlabError(f"{what} '{s}' is not hexadecimal", EXIT_USAGE) from None
    if not 0 <= v <= 0xFFFF:
        raise DevlabError(f"{what} {s} does not fit 16 bits", EXIT_USAGE)
    return "%04x" % v


def parse_hex_bytes(s, what):
    t = re.sub(r"0[xX]([0-9a-fA-F]{2})", r"\1", s)
    t = re.sub(r"[\s:,-]", "", t)
    try:
        b = bytes.fromhex(t)
    except ValueError:
        raise DevlabError(f"{what} is not hex bytes", EXIT_USAGE) from None
    if not b:
        raise DevlabError(f"{what} is empty", EXIT_USAGE)
    return b


def default_report_desc(n):
    """Vendor page 0xFF00, usage 1: one n-byte input and one n-byte output report."""
    count = bytes([0x95, n]) if n <= 0xFF else bytes([0x96, n & 0xFF, n >> 8])
    return (bytes([0x06, 0x00, 0xFF, 0x09, 0x01, 0xA1, 0x01, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08])
            + count + bytes([0x09, 0x01, 0x81, 0x02]) + count + bytes([0x09, 0x01, 0x91, 0x02, 0xC0]))


def check_usb_string(value, what):
    b = s2b(value)
    n = len(b) + (1 if b.endswith(b"\n") or not b else 0)
    if n > USB_MAX_STRING_LEN:
        raise DevlabError(f"{what} is {len(b)} bytes; gadget configfs strings are limited to "
                          f"{USB_MAX_STRING_LEN} bytes (USB_MAX_STRING_LEN)", EXIT_LIMIT)


def write_usb_string(path, value):
    """configfs strips one trailing newline and ignores empty writes, so an
    empty string, or one that ends in a newline, gets one extra newline."""
    b = s2b(value)
    if not b or b.endswith(b"\n"):
        b += b"\n"
    write_attr(path, b)


def gadget_dir(name):
    return os.path.join(GADGETS, PREFIX + name)


def mkdir_func(g, kind, inst):
    path = f"{g}/functions/{kind}.{inst}"
    try:
        os.mkdir(path)
    except OSError as e:
        if e.errno == errno.ENOENT:
            mod = {"hid": "usb_f_hid", "Loopback": "usb_f_ss_lb", "SourceSink": "usb_f_ss_lb",
                   "ffs": "usb_f_fs", "ecm": "usb_f_ecm"}.get(kind, kind)
            raise DevlabError(f"gadget function '{kind}' unknown to configfs: kernel module {mod} missing",
                              EXIT_MODULE) from None
        if kind == "hid" and e.errno == errno.ENODEV:
            raise DevlabError("kernel limit: no free /dev/hidgN minor (usb_f_hid allows 4 HID functions "
                              "at once, HIDG_MINORS); remove a hid/composite device first", EXIT_LIMIT) from None
        raise DevlabError(f"cannot create {path}: {e.strerror}") from None
    return path


def build_gadget(rec, fattrs):
    if not os.path.isdir(GADGETS):
        raise DevlabError(f"{GADGETS} missing: run `devlab init` first (configfs/libcomposite)", EXIT_MODULE)
    g = gadget_dir(rec["name"])
    try:
        os.mkdir(g)
    except FileExistsError:
        raise DevlabError(f"gadget {g} already exists (left over? `devlab reset` removes it)") from None
    try:
        write_attr(g + "/idVendor", "0x%s\n" % rec["vid"])
        write_attr(g + "/idProduct", "0x%s\n" % rec["pid"])
        write_attr(g + "/bcdDevice", "0x%s\n" % rec["bcd"])
        write_attr(g + "/bcdUSB", "0x0200\n")
        # configfs (6.1) gives iManufacturer/iProduct/iSerialNumber ids 1-3
        # whenever strings/0x409 exists, even for a string never written (the
        # host's GET_DESCRIPTOR for it then fails). Only without the folder
        # are all three 0: that is --no-serial.
        if rec.get("strings", "all") != "none":
            os.mkdir(g + "/strings/0x409")
            write_usb_string(g + "/strings/0x409/manufacturer", rec["manufacturer"])
            write_usb_string(g + "/strings/0x409/product", rec["product"])
            if rec["serial"] is not None:
                write_usb_string(g + "/strings/0x409/serialnumber", rec["serial"])
        os.mkdir(g + "/configs/c.1")
        write_attr(g + "/configs/c.1/MaxPower", "100\n")
        funcs = []
        if rec["type"] in ("hid", "composite"):
            f = mkdir_func(g, "hid", "usb0")
            write_attr(f + "/protocol", "%d\n" % rec["hid_protocol"])
            write_attr(f + "/subclass", "%d\n" % rec["hid_subclass"])
            write_attr(f + "/report_length", "%d\n" % rec["report_len"])
            write_attr(f + "/report_desc", bytes.fromhex(rec["report_desc"]), "report_desc")
            funcs.append(f)
            rec["hidg"] = ["/dev/hidg%s" % read_text(f + "/dev", "?:?").split(":")[1]]
        if rec["type"] in ("loopback", "sourcesink", "composite"):
            kind = FUNC_KIND[rec["bulk_function"]]
            f = mkdir_func(g, kind, "usb0")
            for k, v in fattrs:
                if not os.path.exists(f"{f}/{k}"):
                    raise DevlabError(f"{kind} has no attribute '{k}' (has: {', '.join(sorted(os.listdir(f)))})",
                                      EXIT_USAGE)
                write_attr(f"{f}/{k}", v + "\n", f"{kind} {k}")
            funcs.append(f)
        if rec["type"] == "ffs":
            funcs.append(mkdir_func(g, "ffs", rec["name"]))
        if rec["type"] == "ecm":
            # CDC ECM: interface 0 communication (interrupt IN), interface 1
            # data with alternate settings 0 (no endpoints) and 1 (bulk IN/OUT).
            funcs.append(mkdir_func(g, "ecm", "usb0"))
        for f in funcs:   # link order = interface order (HID is interface 0)
            os.symlink(f, g + "/configs/c.1/" + os.path.basename(f))
        if rec.get("os_desc"):
            # MS OS 1.0: composite answers string 0xEE ("MSFT100" + vendor
            # code) and the vendor requests for the linked configuration.
            write_attr(g + "/os_desc/use", "1\n")
            write_attr(g + "/os_desc/b_vendor_code", "0x%02x\n" % rec["os_vendor_code"])
            write_attr(g + "/os_desc/qw_sign", "MSFT100\n")
            os.symlink(g + "/configs/c.1", g + "/os_desc/c.1")
    except BaseException:
        delete_gadget(g)
        raise


def ffs_mounts(inst):
    """Mount points of the FunctionFS instance `inst` (source name = instance)."""
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "functionfs" and parts[0] == inst:
                out.append(parts[1])
    return out


def mount_ffs(st, rec):
    """Mounts the device's FunctionFS (once) under STATE/ffs/NAME; returns the mount point."""
    mnt = os.path.join(st.dir, "ffs", rec["name"])
    if mnt in ffs_mounts(rec["name"]):
        return mnt
    os.makedirs(mnt, exist_ok=True)
    r = run(["mount", "-t", "functionfs", rec["name"], mnt])
    if r.returncode:
        raise DevlabError(f"cannot mount functionfs '{rec['name']}' on {mnt}: {r.stderr.strip()}")
    return mnt


def umount_ffs(inst):
    for mnt in ffs_mounts(inst):
        run(["umount", mnt])


def delete_gadget(g):
    if not os.path.isdir(g):
        return
    if read_text(g + "/UDC", ""):
        try:
            write_attr(g + "/UDC", "\n")
        except DevlabError:
            pass
    errs = []

    def rm(fn, p):
        try:
            fn(p)
        except FileNotFoundError:
            pass
        except OSError as e:
            errs.append(f"{p}: {e.strerror}")

    for c in glob.glob(g + "/configs/*"):
        for e in os.listdir(c):
            if os.path.islink(f"{c}/{e}"):
                rm(os.unlink, f"{c}/{e}")
        for s in glob.glob(c + "/strings/*"):
            rm(os.rmdir, s)
        rm(os.rmdir, c)
    for f in glob.glob(g + "/functions/ffs.*"):
        umount_ffs(os.path.basename(f)[4:])
    for f in glob.glob(g + "/functions/*"):
        rm(os.rmdir, f)
    for s in glob.glob(g + "/strings/*"):
        rm(os.rmdir, s)
    for o in glob.glob(g + "/os_desc/*"):
        if os.path.islink(o):
            rm(os.unlink, o)
    rm(os.rmdir, g)
    if errs:
        raise DevlabError("could not delete gadget: " + "; ".join(errs))


# ---------------------------------------------------------------- commands

def emit(obj):
    print(json.dumps(obj, sort_keys=False))


def cmd_init(args, st):
    if args.udcs is not None and not 1 <= args.udcs <= MAX_UDCS:
        raise DevlabError(f"--udcs must be 1..{MAX_UDCS} (dummy_hcd limit)", EXIT_USAGE)
    want = args.udcs if args.udcs is not None else 8
    missing = []
    with st:
        dummies = [u for u in udc_names() if u.startswith("dummy_udc.")]
        if module_loaded("dummy_hcd"):
            if args.udcs is not None and len(dummies) != want:
                busy = [u for u, g in bound_udcs().items() if u.startswith("dummy_udc.")]
                if busy:
                    raise DevlabError(f"dummy_hcd has {len(dummies)} UDCs, {want} asked, and "
                                      f"{len(busy)} are in use: unplug everything (devlab reset) first")
                r = run(["rmmod", "dummy_hcd"])
                if r.returncode:
                    raise DevlabError(f"rmmod dummy_hcd failed: {r.stderr.strip()}")
                modprobe("dummy_hcd", f"num={want}")
        else:
            modprobe("dummy_hcd", f"num={want}")
        modprobe("libcomposite")
        if not os.path.isdir(GADGETS):
            with open("/proc/mounts") as f:
                mounted = any(line.split()[2] == "configfs" for line in f)
            if not mounted:
                r = run(["mount", "-t", "configfs", "none", "/sys/kernel/config"])
                if r.returncode:
                    raise DevlabError(f"cannot mount configfs: {r.stderr.strip()}", EXIT_MODULE)
            if not os.path.isdir(GADGETS):
                raise DevlabError(f"{GADGETS} missing after loading libcomposite", EXIT_MODULE)
        # usbhid/hid-generic up front: left to udev's autoload, the first HID
        # device's hidraw waited on a module load over 9p (seen: >20 s).
        for mod in ("usb_f_hid", "usb_f_ss_lb", "usb_f_fs", "uhid", "usbhid", "hid_generic"):
            try:
                modprobe(mod)
            except DevlabError as e:
                missing.append(mod)
                warn(str(e))
        # The UDC class devices appear as the module initialises; be sure.
        wait_until(lambda: len([u for u in udc_names() if u.startswith("dummy_udc.")]) >= 1, 5, None)
        udcs = udc_names()
        buses = {u: udc_host_root(u)[0] for u in udcs}
        st.data["udcs"] = udcs
        st.save()
    emit({"udcs": udcs, "buses": buses, "state_dir": st.dir, "missing_modules": missing,
          "hidg_bin": find_bin(args, "devlab-hidg"), "uhid_bin": find_bin(args, "devlab-uhid")})


def cmd_create(args, st):
    name, typ = args.name, args.type
    if not NAME_RE.match(name):
        raise DevlabError(f"bad name '{name}': use 1-64 of [A-Za-z0-9_.-], not starting with '.' or '-'", EXIT_USAGE)
    if typ not in TYPES:
        raise DevlabError(f"unknown type '{typ}' (one of: {', '.join(TYPES)})", EXIT_USAGE)
    if not 1 <= args.report_len <= 1024:
        raise DevlabError("--report-len must be 1..1024 (high-speed interrupt wMaxPacketSize)", EXIT_USAGE)
    serial = None if (args.no_serial or args.stalled_serial) else (args.serial if args.serial is not None else name)
    if args.no_serial and typ != "uhid" and (args.manufacturer is not None or args.product is not None):
        raise DevlabError("--no-serial cannot keep --manufacturer/--product on this kernel: configfs numbers "
                          "all three device strings together, so iSerialNumber 0 means no strings at all "
                          "(--stalled-serial keeps them, with an iSerialNumber whose string fails)", EXIT_USAGE)
    if args.stalled_serial and typ == "uhid":
        raise DevlabError("--stalled-serial is for USB gadgets (uhid: use --no-serial for an empty uniq)", EXIT_USAGE)
    rec = {"name": name, "type": typ, "state": "created", "udc": None,
           "vid": parse_hex16(args.vid, "--vid"), "pid": parse_hex16(args.pid, "--pid"),
           "bcd": parse_hex16(args.bcd, "--bcd"), "serial": serial,
           "manufacturer": args.manufacturer if args.manufacturer is not None else "devlab",
           "product": args.product if args.product is not None else f"devlab {typ} {name}",
           "strings": "none" if args.no_serial else ("stalled-serial" if args.stalled_serial else "all"),
           "created": time.time()}
    if rec["strings"] == "none" and typ != "uhid":
        rec["manufacturer"] = rec["product"] = None
    if typ in ("hid", "composite", "uhid"):
        rd = parse_hex_bytes(args.report_desc, "--report-desc") if args.report_desc else default_report_desc(args.report_len)
        if len(rd) > 4096:
            raise DevlabError(f"--report-desc is {len(rd)} bytes; HID allows 4096 (HID_MAX_DESCRIPTOR_SIZE)", EXIT_LIMIT)
        mode = args.hid_mode
        if mode.startswith("script:"):
            path = os.path.abspath(mode[7:])
            if not os.path.isfile(path):
                raise DevlabError(f"script file {path} not found", EXIT_USAGE)
            mode = "script:" + path
        elif mode not in ("echo", "none"):
            raise DevlabError(f"--hid-mode '{mode}': use echo, script:FILE or none", EXIT_USAGE)
        rec.update({"report_desc": rd.hex(), "report_len": args.report_len, "hid_mode": mode,
                    "hid_protocol": args.hid_protocol, "hid_subclass": args.hid_subclass})
    if typ in ("loopback", "sourcesink"):
        rec["bulk_function"] = typ
    if typ == "ffs":
        if len(name) > FFS_INST_MAX:
            raise DevlabError(f"ffs device names are at most {FFS_INST_MAX} characters (FunctionFS instance name)",
                              EXIT_USAGE)
        if args.msos_guid is not None and not re.match(r"^[\x20-\x7e]{1,200}$", args.msos_guid):
            raise DevlabError("--msos-guid: 1-200 printable ASCII characters", EXIT_USAGE)
        code = int(parse_hex16(args.os_vendor_code, "--os-vendor-code"), 16)
        if not 1 <= code <= 0xff:
            raise DevlabError("--os-vendor-code: 01..ff", EXIT_USAGE)
        rec.update({"msos_guid": args.msos_guid, "msos_property": args.msos_property,
                    "os_desc": args.msos_guid is not None and not args.no_os_desc, "os_vendor_code": code})
    elif args.msos_guid is not None:
        raise DevlabError("--msos-guid applies to ffs devices", EXIT_USAGE)
    if typ == "composite":
        rec["bulk_function"] = args.bulk
    fattrs = []
    for kv in args.fattr or []:
        k, sep, v = kv.partition("=")
        if not sep or not re.match(r"^[a-z_]+$", k):
            raise DevlabError(f"--fattr '{kv}': use KEY=VALUE", EXIT_USAGE)
        fattrs.append((k, v))
    rec["fattr"] = fattrs
    if typ == "uhid":
        if fattrs:
            raise DevlabError("--fattr applies to USB bulk functions, not uhid", EXIT_USAGE)
        bus = args.bus.lower()
        try:
            rec["bus"] = BUS_NAMES[bus] if bus in BUS_NAMES else int(bus, 0)
        except ValueError:
            raise DevlabError(f"--bus '{args.bus}': a number or one of {', '.join(BUS_NAMES)}", EXIT_USAGE) from None
        rec["phys"] = args.phys if args.phys is not None else f"devlab/{name}"
        rec["uhid_name"] = args.product if args.product is not None else f"devlab uhid {name}"
        for val, lim, what in ((rec["uhid_name"], UHID_NAME_MAX, "--product (uhid name)"),
                               (rec["phys"], UHID_PHYS_MAX, "--phys"),
                               (serial or "", UHID_UNIQ_MAX, "serial (uhid uniq)")):
            if len(s2b(val)) > lim:
                raise DevlabError(f"{what} is {len(s2b(val))} bytes; struct uhid_create2_req allows {lim}", EXIT_LIMIT)
    else:
        for what in ("manufacturer", "product", "serial"):
            if rec[what] is not None:
                check_usb_string(rec[what], what)
    with st:
        if name in st.devices:
            raise DevlabError(f"device '{name}' already exists (devlab remove {name})")
        if typ != "uhid":
            build_gadget(rec, fattrs)
            rec["gadget"] = gadget_dir(name)
        st.devices[name] = rec
        st.save()
    emit(public_record(rec))


def public_record(rec):
    out = {k: v for k, v in rec.items() if k not in ("daemon",)}
    d = rec.get("daemon")
    out["daemon_pid"] = d["pid"] if d else None
    out["daemon_alive"] = daemon_alive(d)
    return out


def hidg_args(rec):
    return ["--dev", rec["hidg"][0], "--mode", rec["hid_mode"], "--report-len", str(rec["report_len"])]


def uhid_args(rec):
    return ["--name", rec["uhid_name"], "--phys", rec["phys"], "--uniq", rec["serial"] or "",
            "--vid", rec["vid"], "--pid", rec["pid"], "--version", rec["bcd"], "--bus", str(rec["bus"]),
            "--rdesc", rec["report_desc"], "--mode", rec["hid_mode"], "--report-len", str(rec["report_len"])]


def ffs_args(rec, mnt):
    a = ["--dir", mnt]
    if rec.get("msos_guid") is not None:
        a += ["--guid", rec["msos_guid"], "--property", rec["msos_property"]]
    return a


def cmd_plug(args, st):
    sock = uevent_socket() if args.wait else None
    with st:
        rec = st.get(args.name)
        if rec["state"] == "plugged":
            where = rec.get("udc") or "uhid"
            raise DevlabError(f"device '{args.name}' is already plugged ({where})")
        t0 = time.monotonic()
        if rec["type"] == "uhid":
            if args.udc:
                raise DevlabError("--udc does not apply to uhid devices", EXIT_USAGE)
            rec["daemon"] = spawn_daemon(st, rec["name"], "uhid", args, "devlab-uhid", uhid_args(rec))
        else:
            g = rec["gadget"]
            if not os.path.isdir(g):
                raise DevlabError(f"gadget {g} vanished (devlab remove {args.name} and create it again)")
            bound = bound_udcs()
            if args.udc:
                if args.udc not in udc_names():
                    raise DevlabError(f"no UDC named '{args.udc}' (have: {' '.join(udc_names()) or 'none; run devlab init'})",
                                      EXIT_NO_UDC)
                if args.udc in bound:
                    raise DevlabError(f"UDC {args.udc} is in use by {os.path.basename(bound[args.udc])}", EXIT_NO_UDC)
                udc = args.udc
            else:
                # Only dummy_hcd's: a usbip-vudc UDC exports over USB/IP and
                # is named with --udc.
                free = [u for u in udc_names() if u not in bound and u.startswith("dummy_udc.")]
                if not free:
                    raise DevlabError(f"no free UDC: all {len(udc_names())} are in use "
                                      f"(devlab init --udcs N, up to {MAX_UDCS})", EXIT_NO_UDC)
                udc = free[0]
            if rec["type"] == "ffs":
                # FunctionFS: the device program hands its descriptors over
                # before the gadget can bind.
                if not find_bin(args, "devlab-ffs"):
                    raise DevlabError("devlab-ffs binary not found (build it with Lab/guest/build.sh; "
                                      "ffs devices have no Python fallback)", EXIT_MODULE)
                rec["daemon"] = spawn_daemon(st, rec["name"], "ffs", args, "devlab-ffs",
                                             ffs_args(rec, mount_ffs(st, rec)))
            t0 = time.monotonic()
            try:
                write_attr(g + "/UDC", udc + "\n", "UDC")
            except DevlabError as e:
                if rec["type"] == "ffs":
                    stop_daemon(rec.get("daemon"))
                    rec["daemon"] = None
                code = EXIT_NO_UDC if "busy" in str(e).lower() or "no such device" in str(e).lower() else EXIT_ERROR
                raise DevlabError(f"binding '{args.name}' to {udc}: {e}", code) from None
            rec["udc"] = udc
            rec["busnum"] = udc_host_root(udc)[0]
            if rec["type"] in ("hid", "composite") and rec["hid_mode"] != "none":
                try:
                    rec["daemon"] = spawn_daemon(st, rec["name"], "hidg", args, "devlab-hidg", hidg_args(rec))
                except DevlabError:
                    write_attr(g + "/UDC", "\n", "UDC")
                    rec["udc"] = None
                    raise
        rec["state"] = "plugged"
        rec["plugged_at"] = time.time()
        st.save()
        rec = dict(rec)
    out = wait_present(rec, args, t0, sock) if args.wait else host_info(rec)
    emit(out)


def wait_present(rec, args, t0, sock):
    seen = {}

    def cond():
        info = host_info(rec)
        if info["present"] and "visible_ms" not in seen:
            seen["visible_ms"] = round((time.monotonic() - t0) * 1000, 1)
        if info["ready"] or (args.no_hidraw_wait and info["present"] and info.get("configured", True)):
            return info
        seen["last"] = info
        return None

    info = wait_until(cond, args.wait, sock)
    if info is None:
        last = seen.get("last", {})
        if not last.get("present"):
            what = "does not appear on the host side"
        else:
            what = (f"is present ({last.get('port_chain') or last.get('hid_id')}) but not ready: "
                    + "; ".join(last.get("not_ready", ["?"])))
        raise DevlabError(f"timeout after {args.wait:g} s: '{rec['name']}' {what}", EXIT_TIMEOUT)
    info["visible_ms"] = seen.get("visible_ms", round((time.monotonic() - t0) * 1000, 1))
    info["plug_ms"] = round((time.monotonic() - t0) * 1000, 1)
    if args.settle:
        subprocess.run(["udevadm", "settle", "-t", str(max(1, int(args.wait)))], stdin=subprocess.DEVNULL)
    return info


def do_unplug(rec, st):
    """Stops the device side and disconnects; returns the monotonic time of the disconnect."""
    stop_daemon(rec.get("daemon"))
    rec["daemon"] = None
    t0 = time.monotonic()
    if rec["type"] != "uhid":
        g = rec["gadget"]
        if read_text(g + "/UDC", ""):
            write_attr(g + "/UDC", "\n", "UDC")
    rec["state"] = "created"
    return t0


def wait_gone(rec, timeout, t0, sock):
    if rec["type"] == "uhid":
        ok = wait_until(lambda: not uhid_host_info(rec)["present"], timeout, sock)
    else:
        ok = wait_until(lambda: usb_gone(rec), timeout, sock)
    if not ok:
        raise DevlabError(f"timeout after {timeout:g} s: '{rec['name']}' is still present on the host side",
                          EXIT_TIMEOUT)
    return round((time.monotonic() - t0) * 1000, 1)


def cmd_unplug(args, st):
    sock = uevent_socket() if args.wait else None
    with st:
        rec = st.get(args.name)
        if rec["state"] != "plugged":
            raise DevlabError(f"device '{args.name}' is not plugged")
        udc = rec.get("udc")
        t0 = do_unplug(rec, st)
        snapshot = dict(rec)
        rec["udc"] = None
        st.save()
    out = {"name": rec["name"], "udc": udc, "unplugged": True}
    if args.wait:
        out["unplug_ms"] = wait_gone(snapshot, args.wait, t0, sock)
        out["gone"] = True
    emit(out)


def remove_one(rec, st):
    errs = []
    try:
        if rec["state"] == "plugged" or daemon_alive(rec.get("daemon")):
            do_unplug(rec, st)
    except DevlabError as e:
        errs.append(str(e))
    if rec["type"] != "uhid":
        try:
            delete_gadget(rec["gadget"])
        except DevlabError as e:
            errs.append(str(e))
    return errs


def cmd_remove(args, st):
    with st:
        rec = st.get(args.name)
        snapshot = dict(rec)
        errs = remove_one(rec, st)
        if errs:
            st.save()
            raise DevlabError(f"removing '{args.name}': " + "; ".join(errs))
        del st.devices[args.name]
        st.save()
    out = {"name": args.name, "removed": True}
    if args.wait and snapshot.get("udc"):
        out["unplug_ms"] = wait_gone(snapshot, args.wait, time.monotonic(), uevent_socket())
    emit(out)


def cmd_list(args, st):
    with st:
        recs = [dict(r) for r in st.devices.values()]
    out = []
    for rec in sorted(recs, key=lambda r: r["name"]):
        o = public_record(rec)
        if rec["state"] == "plugged":
            h = host_info(rec)
            o.update({"present": h["present"], "port_chain": h["port_chain"], "hidraw": h["hidraw"],
                      "sysfs": h["sysfs"]})
        out.append(o)
    emit(out)


def cmd_info(args, st):
    with st:
        rec = dict(st.get(args.name))
    out = host_info(rec)
    out["state"] = rec["state"]
    emit(out)


def cmd_wait(args, st):
    sock = uevent_socket()
    with st:
        recs = [dict(st.get(n)) for n in args.names]
    t0 = time.monotonic()
    out = []
    for rec in recs:
        left = max(0.0, args.timeout - (time.monotonic() - t0))
        if args.gone:
            wait_gone(rec, left, t0, sock)
            out.append({"name": rec["name"], "gone": True, "ms": round((time.monotonic() - t0) * 1000, 1)})
        else:
            if rec["state"] != "plugged":
                raise DevlabError(f"device '{rec['name']}' is not plugged")
            ns = argparse.Namespace(wait=left if left > 0 else 0.001, no_hidraw_wait=args.no_hidraw_wait, settle=False)
            info = wait_present(rec, ns, t0, sock)
            info["ms"] = info.pop("plug_ms")
            out.append(info)
    emit(out)


def cmd_reset(args, st):
    removed, errs = [], []
    with st:
        for name, rec in list(st.devices.items()):
            e = remove_one(rec, st)
            if e:
                errs += e
            else:
                removed.append(name)
                del st.devices[name]
        for g in glob.glob(f"{GADGETS}/{PREFIX}*"):   # left by a lost state dir
            try:
                delete_gadget(g)
                removed.append(os.path.basename(g)[len(PREFIX):] + " (orphan gadget)")
            except DevlabError as e:
                errs.append(str(e))
        st.save()
    if errs:
        raise DevlabError("reset incomplete: " + "; ".join(errs))
    emit({"removed": removed})


# ---------------------------------------------------------------- Python fallbacks

def _fallback_common(argv, spec):
    vals, i = {}, 0
    while i < len(argv):
        k = argv[i]
        if k not in spec or i + 1 >= len(argv):
            sys.exit(f"fallback: bad argument {k}")
        vals[k] = argv[i + 1]
        i += 2
    return vals


def _load_script(path, maxlen):
    steps = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = b2s(raw).strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("delay_ms"):
                steps.append(("delay", int(re.sub(r"^delay_ms[\s=:]*", "", line))))
            else:
                data = parse_hex_bytes(line, f"{path}:{n}")
                if len(data) > maxlen:
                    sys.exit(f"{path}:{n}: report longer than {maxlen}")
                steps.append(("report", data))
    return steps


_stop = False


def _on_term(*_):
    global _stop
    _stop = True


def fallback_hidg(argv):
    """Python twin of src/devlab-hidg.c (slower, same behaviour)."""
    v = _fallback_common(argv, {"--dev", "--mode", "--report-len", "--ready-fd", "--open-timeout-ms"})
    dev, mode = v["--dev"], v.get("--mode", "echo")
    steps = _load_script(mode[7:], 4096) if mode.startswith("script:") else []
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    deadline = time.monotonic() + int(v.get("--open-timeout-ms", "10000")) / 1000
    while True:
        try:
            fd = os.open(dev, os.O_RDWR)
            break
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or time.monotonic() > deadline:
                sys.exit(f"devlab-hidg.py: cannot open {dev}: {e.strerror}")
            time.sleep(0.01)
    if "--ready-fd" in v:
        rfd = int(v["--ready-fd"])
        os.write(rfd, f"ready {dev} python\n".encode())
        os.close(rfd)
    due, idx, triggered = time.monotonic(), 0, False
    while not _stop:
        wait = None
        if idx < len(steps) and triggered:
            left = due - time.monotonic()
            if left <= 0:
                kind, val = steps[idx]
                idx += 1
                if kind == "report":
                    try:
                        os.write(fd, val)
                    except OSError as e:
                        if e.errno != errno.ESHUTDOWN:
                            raise
                        idx -= 1      # host has not configured us yet: retry
                        due = time.monotonic() + 0.01
                        continue
                    due = time.monotonic()
                else:
                    due = time.monotonic() + val / 1000
                continue
            wait = left
        try:
            if not select.select([fd], [], [], wait)[0]:
                continue
            data = os.read(fd, 4096)
            if data and steps and not triggered:   # see "script" in src/devlab-hidg.c
                triggered, due = True, time.monotonic()
            if data and mode == "echo":
                os.write(fd, data)
        except InterruptedError:
            continue
        except OSError as e:
            if _stop:
                break
            print(f"devlab-hidg.py: {dev}: {e.strerror}", file=sys.stderr)
            time.sleep(0.05)
    os.close(fd)


# struct uhid_event (linux/uhid.h, packed): u32 type + a 4372-byte union.
UHID_EV_SIZE = 4 + 128 + 64 + 64 + 2 + 2 + 16 + 4096
(UHID_DESTROY, UHID_START, UHID_STOP, UHID_OPEN, UHID_CLOSE, UHID_OUTPUT, UHID_GET_REPORT,
 UHID_GET_REPORT_REPLY, UHID_CREATE2, UHID_INPUT2, UHID_SET_REPORT, UHID_SET_REPORT_REPLY) = \
    (1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14)


def rdesc_has_report_ids(d):
    """True if a report descriptor has a Report ID item (short item 0x85)."""
    i = 0
    while i < len(d):
        p = d[i]
        if p == 0xFE:
            i += 3 + (d[i + 1] if i + 1 < len(d) else 0)
            continue
        if p & 0xFC == 0x84:
            return True
        i += 1 + (4 if p & 3 == 3 else p & 3)
    return False


def _uhid_ev(typ, payload):
    return (struct.pack("<I", typ) + payload).ljust(UHID_EV_SIZE, b"\0")


def fallback_uhid(argv):
    """Python twin of src/devlab-uhid.c."""
    v = _fallback_common(argv, {"--name", "--phys", "--uniq", "--vid", "--pid", "--version", "--country",
                                "--bus", "--rdesc", "--mode", "--report-len", "--ready-fd"})
    mode = v.get("--mode", "echo")
    steps = _load_script(mode[7:], 4096) if mode.startswith("script:") else []
    rd = bytes.fromhex(v["--rdesc"])
    has_ids = rdesc_has_report_ids(rd)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    fd = os.open("/dev/uhid", os.O_RDWR)
    payload = (s2b(v.get("--name", "devlab uhid")).ljust(128, b"\0")[:128]
               + s2b(v.get("--phys", "")).ljust(64, b"\0")[:64] + s2b(v.get("--uniq", "")).ljust(64, b"\0")[:64]
               + struct.pack("<HHIIII", len(rd), int(v.get("--bus", "6"), 0), int(v.get("--vid", "1209"), 16),
                             int(v.get("--pid", "1"), 16), int(v.get("--version", "100"), 16),
                             int(v.get("--country", "0"), 0)) + rd)
    os.write(fd, _uhid_ev(UHID_CREATE2, payload))
    rfd = int(v["--ready-fd"]) if "--ready-fd" in v else None
    ready_deadline = time.monotonic() + 5
    stored = {}
    rlen = int(v.get("--report-len", "64"))
    live, idx, due = False, 0, 0.0
    while not _stop:
        waits = []
        if rfd is not None:
            waits.append(ready_deadline - time.monotonic())
            if waits[-1] <= 0:
                os.write(rfd, b"ready nostart python\n")
                os.close(rfd)
                rfd = None
                continue
        if live and idx < len(steps):
            left = due - time.monotonic()
            if left <= 0:
                kind, val = steps[idx]
                idx += 1
                if kind == "report":
                    os.write(fd, _uhid_ev(UHID_INPUT2, struct.pack("<H", len(val)) + val))
                    due = time.monotonic()
                else:
                    due = time.monotonic() + val / 1000
                continue
            waits.append(left)
        try:
            if not select.select([fd], [], [], min(waits) if waits else None)[0]:
                continue
            ev = os.read(fd, UHID_EV_SIZE)
        except InterruptedError:
            continue
        typ = struct.unpack_from("<I", ev)[0]
        if typ == UHID_START and rfd is not None:
            os.write(rfd, b"ready started python\n")
            os.close(rfd)
            rfd = None
        elif typ == UHID_OPEN and steps and not live:
            live, due = True, time.monotonic() + 0.1   # see UHID_OPEN in src/devlab-uhid.c
        elif typ == UHID_OUTPUT and steps and not live:
            live, due = True, time.monotonic()
        if typ == UHID_OUTPUT and mode == "echo":
            size = struct.unpack_from("<H", ev, 4 + 4096)[0]
            data = ev[4:4 + size]
            if not has_ids and data:
                data = data[1:]   # the HID core's placeholder report id 0
            os.write(fd, _uhid_ev(UHID_INPUT2, struct.pack("<H", len(data)) + data))
            # The current input report of its number, for GET_REPORT(Input) (rtype 2).
            stored[(2, data[0] if has_ids and data else 0)] = data
        elif typ == UHID_SET_REPORT:
            rid, rnum, rtype, size = struct.unpack_from("<IBBH", ev, 4)
            stored[(rtype, rnum)] = ev[12:12 + size]
            os.write(fd, _uhid_ev(UHID_SET_REPORT_REPLY, struct.pack("<IH", rid, 0)))
        elif typ == UHID_GET_REPORT:
            rid, rnum, rtype = struct.unpack_from("<IBB", ev, 4)
            data = stored.get((rtype, rnum), bytes([rnum]) + bytes(rlen) if rnum else bytes(rlen))
            os.write(fd, _uhid_ev(UHID_GET_REPORT_REPLY, struct.pack("<IHH", rid, 0, len(data)) + data))
    os.write(fd, _uhid_ev(UHID_DESTROY, b""))
    os.close(fd)


# ---------------------------------------------------------------- main

class Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"devlab: error: {message} (devlab --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser():
    def globals_parser(default):
        g = argparse.ArgumentParser(add_help=False)
        g.add_argument("--state", default=default, help="state directory (default $DEVLAB_STATE, else /run/devlab)")
        g.add_argument("--bin", default=default, help="folder with devlab-hidg and devlab-uhid (default $DEVLAB_BIN, "
                                                      "else Lab/.cache/bin next to this script)")
        return g

    # Subcommands accept the global options too, but must not reset them to
    # None when they were given before the command (argparse would).
    common = globals_parser(argparse.SUPPRESS)
    p = Parser(prog="devlab", description="USB gadget and uhid devices for the devif lab VM. See Lab/guest/README.md.",
               parents=[globals_parser(None)])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)

    s = sub.add_parser("init", parents=[common], help="load modules, mount configfs; print the UDCs")
    s.add_argument("--udcs", type=int, help=f"number of dummy_hcd controllers (default 8 on first load, max {MAX_UDCS})")

    s = sub.add_parser("create", parents=[common], help="define a device (USB gadget not yet plugged)")
    s.add_argument("name")
    s.add_argument("type", help="|".join(TYPES))
    s.add_argument("--vid", default="1209")
    s.add_argument("--pid", default="0001")
    s.add_argument("--bcd", default="0100", help="bcdDevice (uhid: HID version)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--serial", help="serial number (default: the NAME); used verbatim")
    g.add_argument("--no-serial", action="store_true",
                   help="iSerialNumber 0 (USB: on kernel 6.1 this means no manufacturer/product strings either); "
                        "uhid: empty uniq")
    g.add_argument("--stalled-serial", action="store_true",
                   help="USB: keep manufacturer/product, iSerialNumber 3 names a string the device fails to return")
    s.add_argument("--manufacturer")
    s.add_argument("--product", help="product string (uhid: the HID name)")
    s.add_argument("--report-desc", help="HID report descriptor as hex")
    s.add_argument("--report-len", type=int, default=64)
    s.add_argument("--hid-mode", default="echo", help="echo | script:FILE | none")
    s.add_argument("--hid-protocol", type=int, default=0, help="bInterfaceProtocol (1 keyboard, 2 mouse)")
    s.add_argument("--hid-subclass", type=int, default=0, help="bInterfaceSubClass (1 boot)")
    s.add_argument("--bulk", choices=("loopback", "sourcesink"), default="loopback",
                   help="composite: the vendor bulk function on interface 1")
    s.add_argument("--fattr", action="append", metavar="KEY=VALUE",
                   help="Loopback/SourceSink configfs attribute, e.g. bulk_buflen=4096, qlen=32, pattern=1")
    s.add_argument("--bus", default="virtual", help="uhid bus: virtual (default), usb, bluetooth, i2c, ... or a number")
    s.add_argument("--phys", help="uhid phys string (default devlab/NAME)")
    s.add_argument("--msos-guid", help="ffs: declare this DeviceInterfaceGUID in MS OS 1.0 descriptors (configfs os_desc)")
    s.add_argument("--msos-property", choices=("sz", "multi"), default="sz",
                   help="ffs: DeviceInterfaceGUID as REG_SZ (sz) or DeviceInterfaceGUIDs as REG_MULTI_SZ (multi)")
    s.add_argument("--os-vendor-code", default="cd", help="ffs: the MS OS 1.0 vendor code (bMS_VendorCode), hex")
    s.add_argument("--no-os-desc", action="store_true",
                   help="ffs: keep the function's MS OS descriptors but leave configfs os_desc off (no string 0xEE)")

    s = sub.add_parser("plug", parents=[common], help="connect a device")
    s.add_argument("name")
    s.add_argument("--udc", help="UDC to use (default: the first free one)")
    s.add_argument("--wait", type=float, metavar="SECONDS", help="block until the host side has it")
    s.add_argument("--no-hidraw-wait", action="store_true", help="with --wait: do not wait for hidraw nodes")
    s.add_argument("--settle", action="store_true", help="with --wait: also run udevadm settle")

    s = sub.add_parser("unplug", parents=[common], help="disconnect a device")
    s.add_argument("name")
    s.add_argument("--wait", type=float, metavar="SECONDS", help="block until the host side lost it")

    s = sub.add_parser("remove", parents=[common], help="unplug if needed and delete a device")
    s.add_argument("name")
    s.add_argument("--wait", type=float, metavar="SECONDS", help="block until the host side lost it")

    sub.add_parser("list", parents=[common], help="JSON array of devices")
    sub.add_parser("reset", parents=[common], help="remove every device devlab made")

    s = sub.add_parser("info", parents=[common], help="host-side view of one device, now")
    s.add_argument("name")

    s = sub.add_parser("wait", parents=[common], help="wait for plugged devices to be visible (or gone)")
    s.add_argument("names", nargs="+")
    s.add_argument("--timeout", type=float, default=10.0)
    s.add_argument("--gone", action="store_true")
    s.add_argument("--no-hidraw-wait", action="store_true")

    s = sub.add_parser("batch", parents=[common], help="run commands from stdin, one per line, one JSON line each")
    s.add_argument("--stop-on-error", action="store_true")
    return p


def cmd_batch(args, st):
    """Runs devlab commands read from stdin, one per line (shell-like
    quoting), in this one process: saves an interpreter start per command.
    Prints one JSON line per command: its normal output, or
    {"error": MESSAGE, "code": N, "line": K}."""
    import shlex
    parser = build_parser()
    failed = 0
    for k, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
            if words and words[0] == "devlab":
                words = words[1:]
            if not words or words[0] in ("batch",) or words[0].startswith("_"):
                raise DevlabError(f"not a batchable command: {line!r}", EXIT_USAGE)
            try:
                sub = parser.parse_args(words)
            except SystemExit:
                raise DevlabError(f"bad arguments: {line!r}", EXIT_USAGE) from None
            for k2 in ("bin", "state"):
                if getattr(sub, k2, None) is None:
                    setattr(sub, k2, getattr(args, k2, None))
            COMMANDS[sub.cmd](sub, st)
        except DevlabError as e:
            failed += 1
            emit({"error": str(e), "code": e.code, "line": k})
            if args.stop_on_error:
                break
        except ValueError as e:
            failed += 1
            emit({"error": f"bad line: {e}", "code": EXIT_USAGE, "line": k})
            if args.stop_on_error:
                break
        sys.stdout.flush()
    if failed:
        raise DevlabError(f"batch: {failed} command(s) failed")


COMMANDS = {"batch": cmd_batch, "init": cmd_init, "create": cmd_create, "plug": cmd_plug, "unplug": cmd_unplug, "remove": cmd_remove,
            "list": cmd_list, "reset": cmd_reset, "info": cmd_info, "wait": cmd_wait}


def main(argv):
    if argv[:1] == ["_devlab-hidg"]:
        return fallback_hidg(argv[1:])
    if argv[:1] == ["_devlab-uhid"]:
        return fallback_uhid(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if os.geteuid() != 0:
            raise DevlabError("devlab must run as root (configfs, modprobe, /dev/uhid)")
        st = State(getattr(args, "state", None) or os.environ.get("DEVLAB_STATE") or default_state_dir())
        COMMANDS[args.cmd](args, st)
    except DevlabError as e:
        print(f"devlab: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("devlab: error: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:   # one line, never a traceback, but say it is ours
        print(f"devlab: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) or 0)

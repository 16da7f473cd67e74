#!/usr/bin/python3 -IS
"""Host-side checks for devlab devices, used by selftest.sh (stdlib only).

  labcheck.py hid-echo /dev/hidrawN [--len 64] [--count 100] [--timeout 2] [--report-id N]
      writes output reports (report id 0 prefix, or N for numbered reports)
      and expects each back as an input report (with N in front when
      numbered); prints JSON with round-trip times.
  labcheck.py hid-expect /dev/hidrawN HEX [HEX...] [--timeout 5] [--trigger LEN]
      (--trigger: first writes a LEN-byte output report of zeros, which
      starts a devlab script) reads input reports and compares them with
      the given ones, in order.
  labcheck.py bulk-loopback /dev/bus/usb/BBB/DDD --iface N --out EP --in EP [--len 1000] [--count 10]
      usbfs (USBDEVFS_BULK via ctypes: no libusb): writes, reads back, compares.
  labcheck.py bulk-source /dev/bus/usb/BBB/DDD --iface N --in EP [--len 65536] [--count 10]
      reads from a SourceSink source; prints bytes and MB/s.
Exit status 0 when the check passed, 1 when it failed (one line on stderr).
"""
import argparse
import ctypes
import fcntl
import json
import os
import select
import statistics
import struct
import sys
import time

USBDEVFS_CLAIMINTERFACE = 0x8004550F     # _IOR('U', 15, unsigned int)
USBDEVFS_RELEASEINTERFACE = 0x80045510   # _IOR('U', 16, unsigned int)
USBDEVFS_BULK = 0xC0185502               # _IOWR('U', 2, struct usbdevfs_bulktransfer) on 64-bit


def fail(msg):
    print(f"labcheck: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def read_report(fd, size, timeout):
    if not select.select([fd], [], [], timeout)[0]:
        return None
    return os.read(fd, size)


def hid_echo(a):
    fd = os.open(a.node, os.O_RDWR)
    rtts = []
    try:
        for i in range(a.count):
            payload = bytes((i + j) & 0xFF for j in range(a.len))
            t0 = time.perf_counter()
            if a.report_id:
                payload = bytes([a.report_id]) + payload
                os.write(fd, payload)
            else:
                os.write(fd, b"\0" + payload)
            got = read_report(fd, 4096, a.timeout)
            rtts.append((time.perf_counter() - t0) * 1000)
            if got is None:
                fail(f"{a.node}: no input report within {a.timeout} s (round trip {i})")
            if got != payload:
                fail(f"{a.node}: round trip {i}: sent {payload[:8].hex()}.. ({len(payload)} B), "
                     f"got {got[:8].hex()}.. ({len(got)} B)")
    finally:
        os.close(fd)
    rtts.sort()
    print(json.dumps({"node": a.node, "count": a.count, "len": a.len,
                      "rtt_ms_median": round(statistics.median(rtts), 3),
                      "rtt_ms_p95": round(rtts[int(len(rtts) * 0.95) - 1 if len(rtts) > 1 else 0], 3),
                      "rtt_ms_max": round(rtts[-1], 3)}))


def hid_expect(a):
    fd = os.open(a.node, os.O_RDWR)
    t0 = time.perf_counter()
    if a.trigger is not None:   # USB HID scripts start at the first output report
        os.write(fd, b"\0" + bytes(a.trigger))
    times = []
    try:
        for i, h in enumerate(a.reports):
            want = bytes.fromhex(h)
            got = read_report(fd, 4096, a.timeout)
            if got is None:
                fail(f"{a.node}: report {i} did not arrive within {a.timeout} s")
            if got != want:
                fail(f"{a.node}: report {i}: want {want.hex()}, got {got.hex()}")
            times.append(round((time.perf_counter() - t0) * 1000, 1))
    finally:
        os.close(fd)
    print(json.dumps({"node": a.node, "reports": len(a.reports), "arrival_ms": times}))


class Usbfs:
    def __init__(self, node, iface):
        self.fd = os.open(node, os.O_RDWR)
        self.iface = iface
        fcntl.ioctl(self.fd, USBDEVFS_CLAIMINTERFACE, struct.pack("I", iface))

    def bulk(self, ep, buf, length, timeout_ms):
        arg = bytearray(struct.pack("@IIIP", ep, length, timeout_ms, ctypes.addressof(buf)))
        return fcntl.ioctl(self.fd, USBDEVFS_BULK, arg, True)

    def close(self):
        try:
            fcntl.ioctl(self.fd, USBDEVFS_RELEASEINTERFACE, struct.pack("I", self.iface))
        finally:
            os.close(self.fd)


def bulk_loopback(a):
    dev = Usbfs(a.node, a.iface)
    try:
        t0 = time.perf_counter()
        for i in range(a.count):
            data = bytes((i * 7 + j) & 0xFF for j in range(a.len))
            out = ctypes.create_string_buffer(data, a.len)
            n = dev.bulk(int(a.out, 0), out, a.len, 2000)
            if n != a.len:
                fail(f"bulk OUT wrote {n} of {a.len}")
            inb = ctypes.create_string_buffer(max(a.len, 4096))
            n = dev.bulk(int(a.inp, 0), inb, max(a.len, 4096), 2000)
            if inb.raw[:n] != data:
                fail(f"bulk IN returned {n} bytes, differing from what was sent (transfer {i})")
        ms = (time.perf_counter() - t0) * 1000
    except OSError as e:
        fail(f"usbfs: {e}")
    finally:
        dev.close()
    print(json.dumps({"transfers": a.count, "len": a.len, "ms_per_round_trip": round(ms / a.count, 3)}))


def bulk_source(a):
    dev = Usbfs(a.node, a.iface)
    total = 0
    try:
        buf = ctypes.create_string_buffer(a.len)
        t0 = time.perf_counter()
        for _ in range(a.count):
            total += dev.bulk(int(a.inp, 0), buf, a.len, 2000)
        s = time.perf_counter() - t0
        if a.out:
            n = dev.bulk(int(a.out, 0), ctypes.create_string_buffer(a.len), a.len, 2000)
            if n != a.len:
                fail(f"bulk OUT to sink wrote {n} of {a.len}")
    except OSError as e:
        fail(f"usbfs: {e}")
    finally:
        dev.close()
    if total != a.len * a.count:
        fail(f"read {total} bytes, expected {a.len * a.count}")
    print(json.dumps({"bytes": total, "seconds": round(s, 3), "MBps": round(total / s / 1e6, 2)}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("hid-echo")
    s.add_argument("node")
    s.add_argument("--len", type=int, default=64)
    s.add_argument("--count", type=int, default=100)
    s.add_argument("--timeout", type=float, default=2.0)
    s.add_argument("--report-id", type=int, default=0, help="numbered reports: send and expect this id first")
    s = sub.add_parser("hid-expect")
    s.add_argument("node")
    s.add_argument("reports", nargs="+")
    s.add_argument("--timeout", type=float, default=5.0)
    s.add_argument("--trigger", type=int, metavar="LEN", help="first write one LEN-byte output report of zeros")
    for name in ("bulk-loopback", "bulk-source"):
        s = sub.add_parser(name)
        s.add_argument("node")
        s.add_argument("--iface", type=int, default=0)
        s.add_argument("--out")
        s.add_argument("--in", dest="inp", required=True)
        s.add_argument("--len", type=int, default=1000 if name == "bulk-loopback" else 65536)
        s.add_argument("--count", type=int, default=10)
    a = p.parse_args()
    {"hid-echo": hid_echo, "hid-expect": hid_expect, "bulk-loopback": bulk_loopback,
     "bulk-source": bulk_source}[a.cmd](a)


if __name__ == "__main__":
    main()

#!/bin/bash
# Runs inside the lab VM (as root) before the scenario: records timings,
# quiets kernel console logging, waits for udev's coldplug, then runs the
# command and records its exit status. Everything lands in the results folder
# (the one read-write folder shared with the host).
results=$1; shift
stamp() { date +%s.%N > "$results/$1"; }
stamp booted
# Kernel messages would interleave with the scenario's output on the console;
# they are collected from dmesg at the end instead.
dmesg -n 1 2>/dev/null
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LAB_RESULTS=$results
if ! pgrep -x systemd-udevd >/dev/null; then
  echo "lab: systemd-udevd is not running in the VM (is the udev package installed on the host?)" >&2
fi
udevadm settle --timeout=120 || echo "lab: udevadm settle timed out" >&2
stamp settled
"$@"
rc=$?
stamp finished
echo "$rc" > "$results/rc"
dmesg > "$results/dmesg.txt" 2>/dev/null
exit "$rc"

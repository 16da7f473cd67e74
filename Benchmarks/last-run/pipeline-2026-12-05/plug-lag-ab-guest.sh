#!/bin/bash
# usage: guestN.sh ROUNDS NAME... (binaries /tmp/ab/NAME-bench)
repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
devlab=$repo/Lab/guest/devlab
$devlab init --udcs 1 >/dev/null
printf 'create bb00 loopback --vid 1209 --pid 4e05 --serial BENCH-B-0\n' | $devlab batch --stop-on-error > /tmp/g2.jsonl
export DEVIF_REGISTRY=/tmp/reg.sqlite
ROUNDS=$1; shift
grep -h . /sys/devices/system/clocksource/clocksource0/current_clocksource > $LAB_RESULTS/clocksource.txt
for i in $(seq 1 $ROUNDS); do
  for who in "$@"; do
    /tmp/ab/$who-bench burst-arrival --gadget-prefix /sys/kernel/config/usb_gadget/devlab-bb --gadgets 1 --vid 0x1209 --pid 0x4e05 --count 8 --measure plug-lag 2>/dev/null \
      | grep '"plug-lag"' | grep -o '"value":[0-9.e-]*' | cut -d: -f2 | sed "s/^/lag $who /"
  done
done | tee $LAB_RESULTS/ab.txt

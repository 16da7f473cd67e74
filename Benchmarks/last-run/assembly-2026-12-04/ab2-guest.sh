#!/bin/bash
repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
devlab=$repo/Lab/guest/devlab
$devlab init --udcs 1 >/dev/null
printf 'create bb00 loopback --vid 1209 --pid 4e05 --serial BENCH-B-0\n' | $devlab batch --stop-on-error > /tmp/g2.jsonl
cp /tmp/pl/head-bench /tmp/head-bench; cp /tmp/pl/proto-bench /tmp/proto-bench
export DEVIF_REGISTRY=/tmp/reg.sqlite
for i in 1 2 3 4 5; do
  for who in head proto; do
    /tmp/$who-bench burst-arrival --gadget-prefix /sys/kernel/config/usb_gadget/devlab-bb --gadgets 1 --vid 0x1209 --pid 0x4e05 --count 8 --measure plug-lag 2>/dev/null \
      | grep '"plug-lag"' | grep -o '"value":[0-9.e-]*' | cut -d: -f2 | sed "s/^/lag $who /"
  done
done | tee $LAB_RESULTS/ab.txt

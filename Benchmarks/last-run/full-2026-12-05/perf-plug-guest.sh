#!/bin/bash
repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
devlab=$repo/Lab/guest/devlab
$devlab init --udcs 1 >/dev/null
printf 'create bb00 loopback --vid 1209 --pid 4e05 --serial BENCH-B-0\n' | $devlab batch --stop-on-error > /tmp/g2.jsonl
export DEVIF_REGISTRY=/tmp/reg.sqlite
cp /tmp/lb/new-bench /tmp/b
B=/tmp/b
$B burst-arrival --gadget-prefix /sys/kernel/config/usb_gadget/devlab-bb --gadgets 1 --vid 0x1209 --pid 0x4e05 --count 3 --measure plug-lag > /dev/null 2>&1
perf record -F 15000 -g -o /tmp/perf.data -- $B burst-arrival --gadget-prefix /sys/kernel/config/usb_gadget/devlab-bb --gadgets 1 --vid 0x1209 --pid 0x4e05 --count 60 --measure plug-lag > $LAB_RESULTS/out.txt 2> $LAB_RESULTS/perf-err.txt
perf script -i /tmp/perf.data --comm devif-assembly,devif-hotplug,devif-pipeline,devif-usb-io -F comm,tid,time,ip,sym 2>/dev/null > $LAB_RESULTS/script.txt

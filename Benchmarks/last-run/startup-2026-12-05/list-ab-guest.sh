#!/bin/bash
# usage: list-guest.sh ROUNDS NAME... (binaries /tmp/ab/NAME-usb); lsusb first in each round
repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
devlab=$repo/Lab/guest/devlab
R=$LAB_RESULTS
ROUNDS=$1; shift
$devlab init --udcs 32 >/dev/null
{ for k in $(seq 0 31); do printf 'create bm%02d loopback --vid 1209 --pid 4e07 --serial BENCH-M-%d\n' $k $k; done
  for k in $(seq 0 31); do printf 'plug bm%02d --udc dummy_udc.%d\n' $k $k; done
  echo "wait $(for k in $(seq 0 31); do printf 'bm%02d ' $k; done) --timeout 120"; } | $devlab batch --stop-on-error > /tmp/many.jsonl || { tail -2 /tmp/many.jsonl > $R/fail.txt; exit 1; }
udevadm settle
export DEVIF_REGISTRY=/tmp/devif-bench/registry.sqlite
mkdir -p /tmp/devif-bench
for who in "$@"; do /tmp/ab/$who-usb list > $R/list-$who.txt 2>&1; done
TIMEFORMAT=%R
for i in $(seq 1 $ROUNDS); do
  { time lsusb >/dev/null; } 2>&1 | sed 's/^/t lsusb /'
  for who in "$@"; do
    { time /tmp/ab/$who-usb list >/dev/null; } 2>&1 | sed "s/^/t $who /"
    { time /tmp/ab/$who-usb --version >/dev/null; } 2>&1 | sed "s/^/t $who-version /"
  done
done > $R/ab.txt

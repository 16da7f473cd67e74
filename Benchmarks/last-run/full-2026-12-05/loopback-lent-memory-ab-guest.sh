#!/usr/bin/env bash
set -u
OUT=$LAB_RESULTS; ROUNDS=$1
BL=/tmp/bench1/Benchmarks/.cache/bin; repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
export DEVIF_REGISTRY=/tmp/reg/registry.sqlite; mkdir -p /tmp/reg
devlab=$repo/Lab/guest/devlab
$devlab init --udcs 4 > /dev/null; $devlab reset >/dev/null
$devlab batch --stop-on-error > $OUT/g.jsonl <<'G'
create blb loopback --vid 1209 --pid 4e02 --serial BENCH-LB
plug blb --udc dummy_udc.1 --wait 30
G
o=$(jq -r 'select(.name == "blb" and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == "out") | .address' $OUT/g.jsonl | head -1)
i=$(jq -r 'select(.name == "blb" and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == "in") | .address' $OUT/g.jsonl | head -1)
cp /tmp/lb/old-bench /tmp/old-bench; cp /tmp/lb/new-bench /tmp/new-bench
for r in $(seq $ROUNDS); do
  for chunk in 4096 64; do
    printf 'C %s %s\n' $chunk "$($BL/bulk-loopback --vid 1209 --pid 4e02 --out $o --in $i --chunk $chunk --seconds 3 | jq -r .value)" >> $OUT/res.txt
    for b in old new; do
      printf '%s %s %s\n' $b $chunk "$(/tmp/$b-bench bulk-loopback --vid 1209 --pid 4e02 --out $o --in $i --chunk $chunk --seconds 3 | head -1 | jq -r .value)" >> $OUT/res.txt
    done
  done
done

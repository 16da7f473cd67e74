#!/usr/bin/env bash
set -u
OUT=$1; ROUNDS=$2; shift 2
BL=/tmp/bl; repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
export DEVIF_REGISTRY=/tmp/reg/registry.sqlite; mkdir -p /tmp/reg
devlab=$repo/Lab/guest/devlab
mkdir -p $OUT
$devlab init --udcs 4 > /dev/null; $devlab reset >/dev/null
$devlab batch --stop-on-error > $OUT/g.jsonl <<'G'
create blb loopback --vid 1209 --pid 4e02 --serial BENCH-LB
plug blb --udc dummy_udc.1 --wait 30
G
o=$(jq -r 'select(.name == "blb" and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == "out") | .address' $OUT/g.jsonl | head -1)
i=$(jq -r 'select(.name == "blb" and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == "in") | .address' $OUT/g.jsonl | head -1)
n=0; for b in "$@"; do n=$((n+1)); cp $b /tmp/s12x-lb$n; done
$BL/bulk-loopback --help 2>&1 | head -5 > $OUT/help.txt
for r in $(seq $ROUNDS); do
  printf 'C %s\n' "$($BL/bulk-loopback --vid 1209 --pid 4e02 --out $o --in $i --chunk 4096 --seconds 3 | jq -r .value)" >> $OUT/res.txt
  n=0; for b in "$@"; do n=$((n+1))
    printf 'b%s %s\n' $n "$(/tmp/s12x-lb$n bulk-loopback --vid 1209 --pid 4e02 --out $o --in $i --chunk 4096 --seconds 3 | head -1 | jq -r .value)" >> $OUT/res.txt
  done
done

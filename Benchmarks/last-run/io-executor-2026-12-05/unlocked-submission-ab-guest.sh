#!/usr/bin/env bash
# OUT ROUNDS BENCH_A BENCH_B
set -u
OUT=$1; ROUNDS=$2; shift 2
BL=/tmp/bl; repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
export DEVIF_REGISTRY=/tmp/reg/registry.sqlite; mkdir -p /tmp/reg
devlab=$repo/Lab/guest/devlab
mkdir -p $OUT
$devlab init --udcs 4 > /dev/null; $devlab reset >/dev/null
$devlab batch --stop-on-error > $OUT/g.jsonl <<'G'
create bss sourcesink --vid 1209 --pid 4e01 --serial BENCH-SS
create blb loopback --vid 1209 --pid 4e02 --serial BENCH-LB
plug bss --udc dummy_udc.0 --wait 30
plug blb --udc dummy_udc.1 --wait 30
G
ep() { jq -r --arg n "$1" --arg d "$2" 'select(.name == $n and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == $d) | .address' $OUT/g.jsonl | head -1; }
si=$(ep bss in); so=$(ep bss out); li=$(ep blb in); lo=$(ep blb out)
n=0; for b in "$@"; do n=$((n+1)); cp $b /tmp/s12x-m$n; done
v() { "$@" 2>/dev/null | head -1 | jq -r .value; }
for r in $(seq $ROUNDS); do
  echo "C-in $(v $BL/bulk-in --vid 1209 --pid 4e01 --endpoint $si --transfer-size 16384 --transfers 8 --seconds 3)" >> $OUT/res.txt
  echo "C-out $(v $BL/bulk-out --vid 1209 --pid 4e01 --endpoint $so --transfer-size 16384 --transfers 8 --seconds 3)" >> $OUT/res.txt
  echo "C-lb $(v $BL/bulk-loopback --vid 1209 --pid 4e02 --out $lo --in $li --chunk 4096 --seconds 3)" >> $OUT/res.txt
  n=0; for b in "$@"; do n=$((n+1)); B=/tmp/s12x-m$n
    echo "b$n-out $(v $B bulk-out --vid 1209 --pid 4e01 --endpoint $so --transfer-size 16384 --transfers 8 --seconds 3)" >> $OUT/res.txt
    for m in stream stream-on-completions push; do
      echo "b$n-$m $(v $B bulk-in --vid 1209 --pid 4e01 --endpoint $si --transfer-size 16384 --transfers 8 --seconds 3 --mode $m)" >> $OUT/res.txt
    done
    echo "b$n-lb $(v $B bulk-loopback --vid 1209 --pid 4e02 --out $lo --in $li --chunk 4096 --seconds 3)" >> $OUT/res.txt
  done
done

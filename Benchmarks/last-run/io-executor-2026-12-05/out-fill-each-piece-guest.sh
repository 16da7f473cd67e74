#!/usr/bin/env bash
set -u
OUT=$1; ROUNDS=$2; B=$3
BL=/tmp/bl; repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
export DEVIF_REGISTRY=/tmp/reg/registry.sqlite; mkdir -p /tmp/reg
devlab=$repo/Lab/guest/devlab
mkdir -p $OUT
$devlab init --udcs 4 > /dev/null; $devlab reset >/dev/null
$devlab batch --stop-on-error > $OUT/g.jsonl <<'G'
create bss sourcesink --vid 1209 --pid 4e01 --serial BENCH-SS
plug bss --udc dummy_udc.0 --wait 30
G
so=$(jq -r 'select(.name == "bss" and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == "out") | .address' $OUT/g.jsonl | head -1)
cp $B /tmp/s12x-f
v() { "$@" 2>/dev/null | head -1 | jq -r .value; }
for r in $(seq $ROUNDS); do
  echo "C $(v $BL/bulk-out --vid 1209 --pid 4e01 --endpoint $so --transfer-size 16384 --transfers 8 --seconds 3)" >> $OUT/res.txt
  echo "C-fill $(v /tmp/bl2/bulk-out-fill --vid 1209 --pid 4e01 --endpoint $so --transfer-size 16384 --transfers 8 --seconds 3)" >> $OUT/res.txt
  echo "devif $(v /tmp/s12x-f bulk-out --vid 1209 --pid 4e01 --endpoint $so --transfer-size 16384 --transfers 8 --seconds 3)" >> $OUT/res.txt
done

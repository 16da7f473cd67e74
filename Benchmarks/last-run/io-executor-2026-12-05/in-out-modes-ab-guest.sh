#!/usr/bin/env bash
set -u
OUT=$1; ROUNDS=$2; B=$3; INMODES=${4:-}
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
ep=$(jq -r 'select(.name == "bss" and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == "out") | .address' $OUT/g.jsonl | head -1)
epi=$(jq -r 'select(.name == "bss" and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == "in") | .address' $OUT/g.jsonl | head -1)
cp $B /tmp/s12x-b
for r in $(seq $ROUNDS); do
  printf 'C-out %s\n' "$($BL/bulk-out --vid 1209 --pid 4e01 --endpoint $ep --transfer-size 16384 --transfers 8 --seconds 3 | jq -r .value)" >> $OUT/res.txt
  for w in thread task-on-completions; do
    printf 'out-%s %s\n' $w "$(/tmp/s12x-b bulk-out --vid 1209 --pid 4e01 --endpoint $ep --transfer-size 16384 --transfers 8 --seconds 3 --writer $w | jq -r .value)" >> $OUT/res.txt
  done
  [[ -n $INMODES ]] && printf 'C-in %s\n' "$($BL/bulk-in --vid 1209 --pid 4e01 --endpoint $epi --transfer-size 16384 --transfers 8 --seconds 3 | jq -r .value)" >> $OUT/res.txt
  for m in $INMODES; do
    printf 'in-%s %s\n' $m "$(/tmp/s12x-b bulk-in --vid 1209 --pid 4e01 --endpoint $epi --transfer-size 16384 --transfers 8 --seconds 3 --mode $m | jq -r .value)" >> $OUT/res.txt
  done
done

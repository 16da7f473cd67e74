#!/usr/bin/env bash
# args: OUTDIR ROUNDS MODES BENCH...   (MODES e.g. "stream push")
set -u
OUT=$1; ROUNDS=$2; MODES=$3; shift 3
BL=/tmp/bl
repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
export DEVIF_REGISTRY=/tmp/reg/registry.sqlite; mkdir -p /tmp/reg
devlab=$repo/Lab/guest/devlab
mkdir -p $OUT
$devlab init --udcs 4 > /dev/null
$devlab reset >/dev/null
$devlab batch --stop-on-error > $OUT/g.jsonl <<'G'
create bss sourcesink --vid 1209 --pid 4e01 --serial BENCH-SS
plug bss --udc dummy_udc.0 --wait 30
G
ep=$(jq -r 'select(.name == "bss" and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == "in") | .address' $OUT/g.jsonl | head -1)
i=0; for b in "$@"; do i=$((i+1)); cp $b /tmp/s12x-bench$i; done
for r in $(seq $ROUNDS); do
  printf 'C %s\n' "$($BL/bulk-in --vid 1209 --pid 4e01 --endpoint $ep --transfer-size 16384 --transfers 8 --seconds 3 | jq -r .value)" >> $OUT/res.txt
  for m in $MODES; do
    i=0; for b in "$@"; do i=$((i+1))
      printf 'b%s-%s %s\n' $i $m "$(/tmp/s12x-bench$i bulk-in --vid 1209 --pid 4e01 --endpoint $ep --transfer-size 16384 --transfers 8 --seconds 3 --mode $m | jq -r .value)" >> $OUT/res.txt
    done
  done
done
if [[ ${PERF:-0} == 1 ]]; then
  i=0; for b in "$@"; do i=$((i+1))
    perf stat -a -e task-clock,context-switches -o $OUT/stat-b$i.txt -- /tmp/s12x-bench$i bulk-in --vid 1209 --pid 4e01 --endpoint $ep --transfer-size 16384 --transfers 8 --seconds 3 --mode stream >> $OUT/res.txt 2>&1
  done
fi

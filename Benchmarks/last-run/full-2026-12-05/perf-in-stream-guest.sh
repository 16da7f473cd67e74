#!/bin/bash
repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
export DEVIF_REGISTRY=/tmp/reg.sqlite
devlab=$repo/Lab/guest/devlab
$devlab init --udcs 2 >/dev/null
$devlab batch --stop-on-error > /tmp/g.jsonl <<'G'
create bss sourcesink --vid 1209 --pid 4e01 --serial BENCH-SS
plug bss --udc dummy_udc.0 --wait 30
G
i=$(jq -r 'select(.name == "bss" and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == "in") | .address' /tmp/g.jsonl | head -1)
cp /tmp/ab/new-bench /tmp/b
for m in push stream-on-completions; do
/tmp/b bulk-in --vid 1209 --pid 4e01 --endpoint $i --transfer-size 16384 --transfers 8 --seconds 3 --mode $m > $LAB_RESULTS/plain-$m.txt 2>&1
perf record -F 5000 -g -o /tmp/perf-$m.data -- /tmp/b bulk-in --vid 1209 --pid 4e01 --endpoint $i --transfer-size 16384 --transfers 8 --seconds 4 --mode $m > $LAB_RESULTS/out-$m.txt 2>&1
perf script -i /tmp/perf-$m.data -F comm,tid,time,ip,sym 2>/dev/null > $LAB_RESULTS/script-$m.txt
done

#!/bin/bash
repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
devlab=$repo/Lab/guest/devlab
B=$repo/Benchmarks/.cache/bin
$devlab init --udcs 4 >/dev/null
$devlab batch --stop-on-error > /tmp/g.jsonl <<'G'
create bss sourcesink --vid 1209 --pid 4e01 --serial BENCH-SS
create blb loopback --vid 1209 --pid 4e02 --serial BENCH-LB
plug bss --udc dummy_udc.0 --wait 30
plug blb --udc dummy_udc.1 --wait 30 --settle
G
ep() { jq -r --arg n "$1" --arg d "$2" 'select(.name == $n and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == $d) | .address' /tmp/g.jsonl | head -n1; }
ss_in=$(ep bss in) ss_out=$(ep bss out) lb_in=$(ep blb in) lb_out=$(ep blb out)
export DEVIF_REGISTRY=/tmp/reg.sqlite
val() { grep -o '"value":[0-9.]*' | head -1 | cut -d: -f2; }
for i in 1 2 3 4; do
  for who in new old C; do
    if [[ $who == C ]]; then bin=$B/bulk-in; pre=(); else bin=/tmp/ab/$who-bench; pre=(bulk-in); fi
    s=$($bin "${pre[@]}" --vid 1209 --pid 4e01 --endpoint $ss_in --transfer-size 16384 --transfers 8 --seconds 3 $([[ $who != C ]] && echo --mode stream) 2>/dev/null | val)
    echo "stream $who $s"
    if [[ $who == C ]]; then bin=$B/bulk-out; pre=(); else pre=(bulk-out); fi
    s=$($bin "${pre[@]}" --vid 1209 --pid 4e01 --endpoint $ss_out --transfer-size 16384 --transfers 8 --seconds 3 2>/dev/null | val)
    echo "out $who $s"
    if [[ $who != C ]]; then
      s=$($bin bulk-in --vid 1209 --pid 4e01 --endpoint $ss_in --transfer-size 16384 --transfers 8 --seconds 3 2>/dev/null | val)
      echo "push $who $s"
      s=$($bin bulk-loopback --vid 1209 --pid 4e02 --out $lb_out --in $lb_in --chunk 4096 --seconds 3 2>/dev/null | val)
      echo "loop $who $s"
    fi
  done
done | tee $LAB_RESULTS/ab.txt

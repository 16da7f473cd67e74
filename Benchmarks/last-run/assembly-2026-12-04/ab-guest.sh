#!/bin/bash
repo=/work/main
export DEVLAB_BIN=$repo/Lab/.cache/bin
devlab=$repo/Lab/guest/devlab
B=$repo/Benchmarks/.cache/bin
$devlab init --udcs 4 >/dev/null
$devlab batch --stop-on-error > /tmp/g.jsonl <<'G'
create bss sourcesink --vid 1209 --pid 4e01 --serial BENCH-SS
create bb00 loopback --vid 1209 --pid 4e05 --serial BENCH-B-0
plug bss --udc dummy_udc.0 --wait 30 --settle
G
ep() { jq -r --arg n "$1" --arg d "$2" 'select(.name == $n and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == $d) | .address' /tmp/g.jsonl | head -n1; }
ss_out=$(ep bss out)
cp /tmp/pl/new-bench /tmp/new-bench; cp /tmp/pl/old-bench /tmp/old-bench
export DEVIF_REGISTRY=/tmp/reg.sqlite
val() { grep -o '"value":[0-9.-]*' | head -1 | cut -d: -f2; }
for i in 1 2 3 4; do
  for who in new old C; do
    if [[ $who == C ]]; then s=$($B/bulk-out --vid 1209 --pid 4e01 --endpoint $ss_out --transfer-size 16384 --transfers 8 --seconds 3 2>/dev/null | val)
    else s=$(/tmp/$who-bench bulk-out --vid 1209 --pid 4e01 --endpoint $ss_out --transfer-size 16384 --transfers 8 --seconds 3 2>/dev/null | val); fi
    echo "out $who $s"
  done
done | tee $LAB_RESULTS/ab.txt
# plug-lag: the loopback gadget on dummy_udc.1 (devlab-bb00 has UDC on .1 via gadget index 0 -> burst uses dummy_udc.0!)
$devlab reset >/dev/null
printf 'create bb00 loopback --vid 1209 --pid 4e05 --serial BENCH-B-0\n' | $devlab batch --stop-on-error > /tmp/g2.jsonl
for i in 1 2 3 4; do
  for who in new old; do
    /tmp/$who-bench burst-arrival --gadget-prefix /sys/kernel/config/usb_gadget/devlab-bb --gadgets 1 --vid 0x1209 --pid 0x4e05 --count 8 --measure plug-lag 2>/dev/null \
      | grep '"plug-lag"' | grep -o '"value":[0-9.e-]*' | cut -d: -f2 | sed "s/^/lag $who /"
  done
done | tee -a $LAB_RESULTS/ab.txt

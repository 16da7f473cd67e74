#!/usr/bin/env bash
# The benchmark's device rows, run inside the lab VM as root:
#
#   Lab/run --results DIR -- env DEVIF_BENCH=... DEVIF_USB=... BASELINES=... RUNS=5 \
#       bash Benchmarks/lab/device-bench.sh
#
#   DEVIF_BENCH  devif-bench (its device subcommands); missing: devif side skipped
#   DEVIF_USB    devif-usb (idle-rss, list-32 and rules-names rows); missing: those devif rows skipped
#   BASELINES    folder of the C baselines (Benchmarks/baselines/build.sh OUT_DIR)
#   RUNS         runs per row (default 5); DEVLAB_BIN: devlab's helpers (default Lab/.cache/bin)
#   ROWS         which rows (default all): bulk-in bulk-in-stream bulk-in-stream-executor bulk-out bulk-loopback bulk-loopback-64 hid-echo usbip-bulk-in plug-arrival plug-lag idle-rss burst-arrival storm-arrival list-32 rules-names
#
# Every sample line goes to $LAB_RESULTS/samples.jsonl (appended); progress to
# stderr and $LAB_RESULTS/device-bench.log. Each row alternates C and devif
# runs so both see the same machine state. Exit 0 when every run that could
# run succeeded, 1 when some failed (the samples taken are kept), 2 on a setup failure.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${LAB_RESULTS:?LAB_RESULTS is not set: run this through Lab/run}"
: "${BASELINES:?BASELINES is not set: the folder of the C baselines (Benchmarks/baselines/build.sh OUT_DIR)}"
RUNS=${RUNS:-5}
ROWS=" ${ROWS:-bulk-in bulk-in-stream bulk-in-stream-executor bulk-out bulk-loopback bulk-loopback-64 hid-echo usbip-bulk-in plug-arrival plug-lag idle-rss burst-arrival storm-arrival list-32 rules-names} "
want() { [[ $ROWS == *" $1 "* ]]; }
DEVIF_BENCH=${DEVIF_BENCH:-}
DEVIF_USB=${DEVIF_USB:-}
export DEVLAB_BIN=${DEVLAB_BIN:-$repo/Lab/.cache/bin}
# The VM's root is read-only: devif-usb's registry goes to a tmpfs.
export DEVIF_REGISTRY=${DEVIF_REGISTRY:-/tmp/devif-bench/registry.sqlite}
mkdir -p "$(dirname "$DEVIF_REGISTRY")"
devlab=$repo/Lab/guest/devlab
samples=$LAB_RESULTS/samples.jsonl
work=$LAB_RESULTS/device-bench
mkdir -p "$work"
# FIFOs cannot live on the 9p results folder: scratch space in the guest's tmpfs.
scratch=$(mktemp -d /tmp/device-bench.XXXXXX) || { echo "device-bench: cannot make a folder in /tmp" >&2; exit 2; }
exec 2> >(tee -a "$LAB_RESULTS/device-bench.log" >&2)

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "device-bench: RUNS must be a positive integer, not '$RUNS'" >&2; exit 2; }
# Logging forks nothing: a process start costs up to a second in the emulated
# VM, and it runs between measurements.
script_start=${EPOCHREALTIME/./}
log() {
  local ds=$(( (${EPOCHREALTIME/./} - script_start) / 100000 ))
  printf 'device-bench: [%4d.%d s] %s\n' $((ds / 10)) $((ds % 10)) "$*" >&2
}
fatal() { log "FATAL: $*"; exit 2; }
failures=()

for prog in bulk-in bulk-out bulk-loopback hid-echo plug-arrival walltime; do
  [[ -x $BASELINES/$prog ]] || fatal "$BASELINES/$prog is missing (build with Benchmarks/baselines/build.sh $BASELINES)"
done

# Which devif-bench measures exist: an absent binary or subcommand skips that side.
devif_has() { [[ -n $DEVIF_BENCH && -x $DEVIF_BENCH ]] && "$DEVIF_BENCH" "$1" --help >/dev/null 2>&1; }
if [[ -z $DEVIF_BENCH ]]; then log "DEVIF_BENCH not set: devif side skipped"
elif [[ ! -x $DEVIF_BENCH ]]; then log "DEVIF_BENCH=$DEVIF_BENCH is not an executable: devif side skipped"; fi
if [[ -z $DEVIF_USB || ! -x $DEVIF_USB ]]; then log "DEVIF_USB='$DEVIF_USB' is not an executable: its idle-rss, list-32 and rules-names rows skipped"; DEVIF_USB=""; fi
# Installed, as a user's copy would be: the VM's root is the host's file
# system over 9p, and what the guest reads from it is not kept in its page
# cache, so a program run from the repository is read from the host at every
# start (0.4-0.8 s for devif-usb's 36 MB; lsusb and its libraries are about
# 0.5 MB). A copy the guest writes stays in its page cache, as an installed
# program on a disk does after its first run.
if [[ -n $DEVIF_USB ]]; then
  cp "$DEVIF_USB" "$scratch/devif-usb" || fatal "cannot copy $DEVIF_USB to $scratch"
  DEVIF_USB=$scratch/devif-usb
fi

# run LABEL TIMEOUT CMD...: one measurement process; its sample lines are
# appended to samples.jsonl; when it fails, its last stderr lines are logged.
run() {
  local label=$1 limit=$2; shift 2
  local out=$scratch/out.txt err=$scratch/err.txt rc
  timeout --kill-after=5 "$limit" "$@" >"$out" 2>"$err"
  rc=$?
  local lines="" shown="" line
  while IFS= read -r line; do
    [[ $line == '{'* ]] || continue
    lines+=$line$'\n'
    # value and unit for the log, read without a jq process.
    [[ $line =~ \"value\":([^,}]*) ]] && shown+="${shown:+; }${BASH_REMATCH[1]}"
  done <"$out"
  # A row measured by another row's programs (usbip-bulk-in by bulk-in's,
  # bulk-loopback-64 by bulk-loopback's) is filed under its own name; the
  # program's other measures keep theirs.
  [[ -n ${SAMPLE_MEASURE:-} ]] && lines=$(sed -E "s/\"measure\":\"${SAMPLE_FROM:-[^\"]*}\"/\"measure\":\"$SAMPLE_MEASURE\"/" <<<"$lines")$'\n'
  [[ -n $lines ]] && printf '%s' "$lines" >>"$samples"
  if ((rc != 0)); then
    ((rc == 124)) && log "$label: FAILED: timed out after $limit s" || log "$label: FAILED (exit $rc): $(tail -n 3 "$err" | tr '\n' ' ')"
    failures+=("$label")
    return 1
  fi
  [[ -n $lines ]] || { log "$label: FAILED: exit 0 but no sample line"; failures+=("$label"); return 1; }
  local unit=""; [[ $lines =~ \"unit\":\"([^\"]*)\" ]] && unit=${BASH_REMATCH[1]}
  local note=""; [[ $lines =~ \"note\":\"([^\"]*)\" ]] && note="  (${BASH_REMATCH[1]})"
  log "$label: $shown $unit$note"
}

# row MEASURE TIMEOUT ARGS...: RUNS runs of the C baseline and of devif-bench, alternating.
row() {
  local measure=$1 limit=$2; shift 2
  local devif=0
  if devif_has "$measure"; then devif=1; elif [[ -n $DEVIF_BENCH ]]; then log "$measure: devif-bench has no '$measure' subcommand: devif side skipped"; fi
  local name=${SAMPLE_MEASURE:-$measure}
  for ((i = 1; i <= RUNS; i++)); do
    SAMPLE_FROM=$measure run "$name C $i/$RUNS" "$limit" "$BASELINES/$measure" "$@"
    ((devif)) && SAMPLE_FROM=$measure run "$name devif $i/$RUNS" "$limit" "$DEVIF_BENCH" "$measure" "$@"
  done
}

# ---- devices --------------------------------------------------------------
log "runs per row: $RUNS; samples -> $samples"
"$devlab" init --udcs 32 >"$work/init.json" || fatal "devlab init failed"
"$devlab" reset >/dev/null || fatal "devlab reset failed"
VID=1209 PID_SS=4e01 PID_LB=4e02 PID_HID=4e03 PID_PLUG=4e04 PID_MANY=4e05 PID_BURST=4e06
gadgets=$'create bss sourcesink --vid 1209 --pid 4e01 --serial BENCH-SS
create blb loopback --vid 1209 --pid 4e02 --serial BENCH-LB
create bhid hid --vid 1209 --pid 4e03 --serial BENCH-HID --report-len 64 --hid-mode echo
create bplug loopback --vid 1209 --pid 4e04 --serial BENCH-PLUG
plug bss --udc dummy_udc.0 --wait 30
plug blb --udc dummy_udc.1 --wait 30
plug bhid --udc dummy_udc.2 --wait 30 --settle'
"$devlab" batch --stop-on-error <<<"$gadgets" >"$work/gadgets.jsonl" || fatal "creating and plugging the gadgets failed: $(tail -n 2 "$work/gadgets.jsonl")"
plug_udc=dummy_udc.3
plug_gadget=/sys/kernel/config/usb_gadget/devlab-bplug

# The bulk endpoints as the host saw them (the kernel's endpoint autoconfig picks them).
endpoint() { # NAME DIRECTION
  jq -r --arg n "$1" --arg d "$2" 'select(.name == $n and .interfaces != null) | .interfaces[0].endpoints[] | select(.type == "Bulk" and .direction == $d) | .address' \
    "$work/gadgets.jsonl" | head -n 1
}
ss_in=$(endpoint bss in) ss_out=$(endpoint bss out) lb_in=$(endpoint blb in) lb_out=$(endpoint blb out)
[[ -n $ss_in && -n $ss_out && -n $lb_in && -n $lb_out ]] || fatal "bulk endpoints not found in the plug output ($work/gadgets.jsonl)"
log "gadgets plugged: sourcesink IN $ss_in OUT $ss_out, loopback OUT $lb_out IN $lb_in, hid $(jq -r 'select(.name == "bhid" and .interfaces != null) | .hidraw[0]' "$work/gadgets.jsonl")"

# ---- transfer rows --------------------------------------------------------
want bulk-in && row bulk-in 60 --vid $VID --pid $PID_SS --endpoint "$ss_in" --transfer-size 16384 --transfers 8 --seconds 3
# The same transfers read the way README shows first: an IN stream as an AsyncSequence.
want bulk-in-stream && SAMPLE_MEASURE=bulk-in-stream row bulk-in 60 --vid $VID --pid $PID_SS --endpoint "$ss_in" --transfer-size 16384 --transfers 8 --seconds 3 --mode stream
want bulk-in-stream-executor && SAMPLE_MEASURE=bulk-in-stream-executor row bulk-in 60 --vid $VID --pid $PID_SS --endpoint "$ss_in" --transfer-size 16384 --transfers 8 --seconds 3 --mode stream-on-completions
want bulk-out && row bulk-out 60 --vid $VID --pid $PID_SS --endpoint "$ss_out" --transfer-size 16384 --transfers 8 --seconds 3
want bulk-loopback && row bulk-loopback 60 --vid $VID --pid $PID_LB --out "$lb_out" --in "$lb_in" --chunk 4096 --seconds 3
# The command/response pattern most devices speak: 64-byte round trips.
want bulk-loopback-64 && SAMPLE_MEASURE=bulk-loopback-64 row bulk-loopback 60 --vid $VID --pid $PID_LB --out "$lb_out" --in "$lb_in" --chunk 64 --seconds 3
want hid-echo && row hid-echo 60 --vid $VID --pid $PID_HID --count 500 --size 64

# ---- bulk IN over USB/IP ---------------------------------------------------
# A SourceSink gadget on usbip-vudc, exported by usbipd and attached over
# loopback TCP with the usbip tool: devif and raw libusb read the imported
# device as they read bulk-in's local one (bulk-in's row against this one is
# the cost of USB/IP itself). vhci-hcd's 16 root hubs go again after.
if want usbip-bulk-in; then
  if ! modprobe usbip-vudc num=1 || ! modprobe vhci-hcd || ! command -v usbipd >/dev/null; then
    log "usbip-bulk-in: skipped: usbip-vudc, vhci-hcd or usbipd (Debian's usbip package) missing"
  else
    "$devlab" create bip sourcesink --vid $VID --pid 4e07 --serial BENCH-IP >/dev/null \
      && "$devlab" plug bip --udc usbip-vudc.0 >/dev/null || fatal "plugging a SourceSink gadget on usbip-vudc.0 failed"
    # The daemon keeps none of this script's descriptors.
    (for d in /proc/$BASHPID/fd/*; do n=${d##*/}; ((n > 2)) && eval "exec $n>&-" 2>/dev/null; done
     exec usbipd --device -D </dev/null >/dev/null 2>&1)
    for ((i = 0; i < 100; i++)); do usbip list -r 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
    usbip attach -r 127.0.0.1 -d usbip-vudc.0 >>"$work/usbip.log" 2>&1 || fatal "usbip attach failed: $(tail -n 2 "$work/usbip.log")"
    ip_in=""
    for ((i = 0; i < 300; i++)); do
      [[ -z $ip_in ]] || break
      for d in /sys/bus/usb/devices/*; do
        [[ $(cat "$d/idProduct" 2>/dev/null) == 4e07 ]] || continue
        for e in "$d"/*:1.0/ep_*; do
          [[ $(cat "$e/type" 2>/dev/null) == Bulk && $(cat "$e/direction" 2>/dev/null) == in ]] && ip_in=0x$(cat "$e/bEndpointAddress")
        done
      done
      [[ -n $ip_in ]] || sleep 0.1
    done
    if [[ -z $ip_in ]]; then
      log "usbip-bulk-in: FAILED: the attached SourceSink's bulk IN endpoint did not appear within 30 s"; failures+=("usbip-bulk-in")
    else
      SAMPLE_MEASURE=usbip-bulk-in row bulk-in 90 --vid $VID --pid 4e07 --endpoint "$ip_in" --transfer-size 16384 --transfers 8 --seconds 3
    fi
    usbip detach -p 0 >/dev/null 2>&1
    pkill -x usbipd
    "$devlab" remove bip >/dev/null
    rm -rf /run/vhci_hcd
    modprobe -r vhci-hcd usbip-vudc || log "usbip-bulk-in: could not unload vhci-hcd and usbip-vudc: later rows see their root hubs"
  fi
fi

# ---- plug arrival: two processes per impl, alternating, RUNS plugs each ---
if want plug-arrival; then
  plug_devif=0
  if devif_has plug-arrival; then plug_devif=1; elif [[ -n $DEVIF_BENCH ]]; then log "plug-arrival: devif-bench has no 'plug-arrival' subcommand: devif side skipped"; fi
  plug_args=(--gadget "$plug_gadget" --udc "$plug_udc" --vid $VID --pid $PID_PLUG --count "$RUNS")
  for ((i = 1; i <= 2; i++)); do
    run "plug-arrival C $i/2" $((60 + RUNS * 45)) "$BASELINES/plug-arrival" "${plug_args[@]}"
    ((plug_devif)) && run "plug-arrival devif $i/2" $((60 + RUNS * 45)) "$DEVIF_BENCH" plug-arrival "${plug_args[@]}"
  done
  # Leave it unplugged whatever happened (a failed run may have stopped mid-plug).
  [[ -n $(cat "$plug_gadget/UDC") ]] && echo "" >"$plug_gadget/UDC"
fi

# ---- idle RSS ------------------------------------------------------------
# rss IMPL READY-PATTERN CMD...: start CMD, wait for its first line (or the
# READY pattern), stay idle 3 s (the measured period), read VmRSS and
# RssAnon (the process's own memory, without the file pages it maps: a
# binary's code is mapped in 64 KiB windows around each page first used), SIGINT it.
# The start wait is bounded at 20 s: a debug devif-usb in the loaded,
# emulated VM once needed more than 5 s to enumerate and print.
rss() {
  local impl=$1 ready=$2; shift 2
  local fifo=$scratch/rss.fifo line kib anon pid rc
  rm -f "$fifo"; mkfifo "$fifo" || { log "idle-rss $impl: FAILED: mkfifo $fifo"; failures+=("idle-rss $impl"); return 1; }
  # A background job of a script starts with SIGINT ignored; restore it, or
  # the SIGINT below would be lost (env execs, so $! is the program itself).
  env --default-signal=INT "$@" >"$fifo" 2>>"$work/rss-stderr.txt" &
  pid=$!
  exec {fd}<"$fifo"
  local deadline=$((SECONDS + 20)) started=0
  while ((SECONDS < deadline)); do
    IFS= read -r -t $((deadline - SECONDS)) -u "$fd" line || break
    [[ -z $ready || $line == *"$ready"* ]] && { started=1; break; }
  done
  ((started)) || log "idle-rss $impl: no start line within 20 s; measuring anyway"
  # Drain the rest so a chatty process never blocks on a full pipe.
  cat <&"$fd" >/dev/null &
  local drain=$!
  sleep 3   # the idle period being measured, not a synchronisation
  local key value _
  kib="" anon=""
  while read -r key value _; do
    [[ $key == VmRSS: ]] && kib=$value
    [[ $key == RssAnon: ]] && anon=$value
  done 2>/dev/null <"/proc/$pid/status"
  kill -INT "$pid" 2>/dev/null
  # Bounded wait for the exit: SIGKILL after 10 s.
  { sleep 10; kill -KILL "$pid" 2>/dev/null; } &
  local killer=$!
  wait "$pid"; rc=$?
  kill "$killer" 2>/dev/null; wait "$killer" 2>/dev/null
  wait "$drain" 2>/dev/null
  exec {fd}<&-
  rm -f "$fifo"
  if [[ -z $kib ]]; then log "idle-rss $impl: FAILED: the process had exited before the reading (exit $rc): $(tail -n 2 "$work/rss-stderr.txt" | tr '\n' ' ')"; failures+=("idle-rss $impl"); return 1; fi
  printf '{"impl":"%s","measure":"idle-rss","unit":"KiB","value":%s}\n' "$impl" "$kib" >>"$samples"
  [[ -n $anon ]] && printf '{"impl":"%s","measure":"idle-rss-anon","unit":"KiB","value":%s}\n' "$impl" "$anon" >>"$samples"
  log "idle-rss $impl: $kib KiB, of which anonymous $anon KiB (exit $rc after SIGINT)"
}
want idle-rss && for ((i = 1; i <= RUNS; i++)); do
  # --enumerate: its first line (a device already present) shows it has
  # enumerated and is watching; plain `watch` prints nothing until a change.
  [[ -n $DEVIF_USB ]] && rss devif-usb-watch "" "$DEVIF_USB" watch --enumerate
  rss udevadm-monitor "monitor will print" udevadm monitor
done

# ---- single plug, paired: devif's arrival after libusb's callback for the ---
# same plug, in one process (plug-arrival compares separate plugs, whose own
# time swings by 5-100 ms)
if want plug-lag && devif_has burst-arrival; then
  "$devlab" reset >/dev/null || fatal "devlab reset before plug-lag failed"
  printf 'create bb00 loopback --vid %s --pid %s --serial BENCH-B-0\n' "$VID" "$PID_BURST" \
    | "$devlab" batch --stop-on-error >"$work/plug-lag.jsonl" || fatal "creating the plug-lag gadget failed: $(tail -n 1 "$work/plug-lag.jsonl" | cut -c1-300)"
  # 12 plugs per run: one plug's lag swings by several milliseconds either
  # way in the VM (libusb's callback in the benchmark's own context is late
  # at times), so the median needs more plugs than the other rows' runs.
  run "plug-lag devif" $((120 + RUNS * 60)) "$DEVIF_BENCH" burst-arrival --gadget-prefix /sys/kernel/config/usb_gadget/devlab-bb \
    --gadgets 1 --vid $VID --pid $PID_BURST --count $((RUNS * 12)) --measure plug-lag
fi

# ---- burst: 24 gadgets plugged at once (needs 24 controllers) -------------
if want burst-arrival && devif_has burst-arrival; then
  "$devlab" reset >/dev/null || fatal "devlab reset before burst-arrival failed"
  {
    for ((k = 0; k < 24; k++)); do printf 'create bb%02d loopback --vid %s --pid %s --serial BENCH-B-%d\n' "$k" "$VID" "$PID_BURST" "$k"; done
  } | "$devlab" batch --stop-on-error >"$work/burst.jsonl" || fatal "creating 24 loopback gadgets failed: $(tail -n 1 "$work/burst.jsonl" | cut -c1-300)"
  run "burst-arrival devif" $((120 + RUNS * 60)) "$DEVIF_BENCH" burst-arrival --gadget-prefix /sys/kernel/config/usb_gadget/devlab-bb \
    --gadgets 24 --vid $VID --pid $PID_BURST --count "$RUNS"
fi

# ---- storm: random plugs and unplugs of the same 24 gadgets ---------------
if want storm-arrival && devif_has storm-arrival; then
  if ! want burst-arrival; then
    "$devlab" reset >/dev/null || fatal "devlab reset before storm-arrival failed"
    {
      for ((k = 0; k < 24; k++)); do printf 'create bb%02d loopback --vid %s --pid %s --serial BENCH-B-%d\n' "$k" "$VID" "$PID_BURST" "$k"; done
    } | "$devlab" batch --stop-on-error >"$work/burst.jsonl" || fatal "creating 24 loopback gadgets failed: $(tail -n 1 "$work/burst.jsonl" | cut -c1-300)"
  fi
  run "storm-arrival devif" $((120 + RUNS * 180)) "$DEVIF_BENCH" storm-arrival --gadget-prefix /sys/kernel/config/usb_gadget/devlab-bb \
    --gadgets 24 --vid $VID --pid $PID_BURST --operations 300 --count "$RUNS"
fi

# ---- rules names with 1 device and with 32; list with 32 -----------------
# Last: they need all 32 controllers. `rules names NODE` (what udev runs per
# event) is timed on the first gadget's node with it alone plugged (besides
# the root hubs), then with all 32: its time must not grow with the devices
# present. Then lsusb and `devif-usb list` alternate with 32.
# rules-names and list-32 time three calls a run: each is one process
# start of 130-400 ms in this VM, whose spread alone moved five-call
# medians by 20-30%.
calls=$((3 * RUNS))
rules_names() { # IMPL NODE: 3 x RUNS timed `devif-usb rules names NODE`
  for ((i = 1; i <= calls; i++)); do
    run "rules-names $1 $i/$calls" 60 "$BASELINES/walltime" --measure rules-names --impl "$1" --note "node $2" -- \
      "$DEVIF_USB" rules names --builtin-classes-only "$2"
  done
}
if want list-32 || want rules-names; then
  "$devlab" reset >/dev/null || fatal "devlab reset before list-32 failed"
  many=()
  for ((k = 0; k < 32; k++)); do
    many+=("$(printf 'bm%02d' "$k")")
  done
  {
    for k in "${!many[@]}"; do echo "create ${many[k]} loopback --vid $VID --pid $PID_MANY --serial BENCH-M-$k"; done
    echo "plug ${many[0]} --udc dummy_udc.0 --wait 30"
  } | "$devlab" batch --stop-on-error >"$work/many.jsonl" || fatal "creating 32 loopback gadgets failed: $(tail -n 1 "$work/many.jsonl" | cut -c1-300)"
  first_node=$(jq -r --arg n "${many[0]}" 'select(.name == $n and .devnum != null) | "\(.busnum) \(.devnum)"' "$work/many.jsonl" | head -n 1)
  [[ -n $first_node ]] || fatal "no bus and device number for ${many[0]} in $work/many.jsonl"
  first_node=$(printf '/dev/bus/usb/%03d/%03d' $first_node)
  udevadm settle --timeout=60 || log "udevadm settle timed out after plugging 1"
  n=$(lsusb -d $VID:$PID_MANY | wc -l)
  ((n == 1)) || fatal "lsusb sees $n devices, not the first one alone"
  want rules-names && [[ -n $DEVIF_USB ]] && rules_names devif-usb-rules-names-1 "$first_node"
  {
    for k in "${!many[@]}"; do ((k == 0)) || echo "plug ${many[k]} --udc dummy_udc.$k"; done
    echo "wait ${many[*]} --timeout 120"
  } | "$devlab" batch --stop-on-error >>"$work/many.jsonl" || fatal "plugging 32 loopback gadgets failed: $(tail -n 1 "$work/many.jsonl" | cut -c1-300)"
  udevadm settle --timeout=60 || log "udevadm settle timed out after plugging 32"
  n=$(lsusb -d $VID:$PID_MANY | wc -l)
  ((n == 32)) || fatal "lsusb sees $n of the 32 devices"
  log "32 loopback gadgets plugged"
  want rules-names && [[ -n $DEVIF_USB ]] && rules_names devif-usb-rules-names-32 "$first_node"
  if want list-32; then
    # 3 x RUNS each (calls, above), alternating.
    for ((i = 1; i <= calls; i++)); do
      run "list-32 lsusb $i/$calls" 60 "$BASELINES/walltime" --measure list-32 --impl lsusb --note "32 devices" -- lsusb
      [[ -n $DEVIF_USB ]] && run "list-32 devif $i/$calls" 60 "$BASELINES/walltime" --measure list-32 --impl devif-usb-list --note "32 devices" -- "$DEVIF_USB" list
    done
  fi
fi
"$devlab" reset >/dev/null || log "devlab reset at the end failed"
rm -rf "$scratch"

log "done: $(wc -l <"$samples") lines in $samples"
if ((${#failures[@]})); then
  log "${#failures[@]} runs FAILED: ${failures[*]}"
  exit 1
fi
exit 0

#!/bin/bash
# devlab self-test: run INSIDE the lab VM as root.
#   bash Lab/guest/selftest.sh RWDIR
# Exercises every device type (or only the SECTIONs named; init always
# runs; "bash selftest.sh x nosuch" lists them) and writes RWDIR/selftest.txt (PASS/FAIL/INFO/
# TIME lines, last line "N passed, N failed") and RWDIR/selftest.log (every
# devlab command with its output). Exit status 0 only if nothing failed.
# Helper binaries: $DEVLAB_BIN if set, else built from the current sources
# into RWDIR/bin with build.sh (the guest sees the host's gcc), so the test
# never runs stale binaries; if that fails, devlab's default (Lab/.cache/bin).
set -u
out=${1:?usage: selftest.sh RWDIR [SECTION...]}
shift
SECTIONS="$*"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
res=$out/selftest.txt
log=$out/selftest.log
: >"$res"
: >"$log"
PY=/usr/bin/python3
DL="$here/devlab"
LC="$PY -IS $here/labcheck.py"
export DEVLAB_STATE=/run/devlab-selftest
rm -rf "$DEVLAB_STATE"
work=$(mktemp -d /run/devlab-selftest-work.XXXXXX)
passed=0
failed=0

pass() { echo "PASS $1${2:+: $2}" >>"$res"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}" >>"$res"; failed=$((failed + 1)); }
info() { echo "INFO $*" >>"$res"; }
timing() { echo "TIME $*" >>"$res"; }
check() { # check NAME DETAIL COMMAND...: pass if the command succeeds
  local n=$1 d=$2; shift 2
  if "$@" >>"$log" 2>&1; then pass "$n" "$d"; else fail "$n" "$d"; fi
}
# dl ARGS...: runs devlab; stdout -> $work/out, stderr -> $work/err; returns its status
dl() {
  echo "+ devlab $*" >>"$log"
  local t0=$(date +%s%N)
  "$DL" "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  cat "$work/out" "$work/err" >>"$log"
  echo "  -> rc=$rc ($(( ($(date +%s%N) - t0) / 1000000 )) ms)" >>"$log"
  return $rc
}
# jget EXPR [FILE]: evaluates a Python expression over the JSON in FILE (default $work/out) as d
jget() { $PY -IS -c 'import json,sys; d=json.load(open(sys.argv[2])); v=eval(sys.argv[1]); print(v if not isinstance(v,(dict,list,bool)) and v is not None else json.dumps(v))' "$1" "${2:-$work/out}"; }
sysattr() { cat "$1" 2>/dev/null; }
one_line_err() { [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q '^devlab: error: ' "$work/err"; }

# ---- helper binaries
if [ -z "${DEVLAB_BIN:-}" ]; then
  if bash "$here/build.sh" "$out/bin" >>"$log" 2>&1; then export DEVLAB_BIN=$out/bin; fi
fi
info "helpers: DEVLAB_BIN=${DEVLAB_BIN:-unset} kernel=$(uname -r)"
ms_of() { local t0=$(date +%s%N); "$@" >/dev/null 2>&1; echo $(( ($(date +%s%N) - t0) / 1000000 )); }
timing "guest process start: python3 -c pass $(ms_of $PY -c pass) ms, python3 -S -c pass $(ms_of $PY -S -c pass) ms, devlab list $(ms_of "$DL" list) ms, devlab list again $(ms_of "$DL" list) ms"

# ---- init
if dl init --udcs 32 && [ "$(jget 'len(d["udcs"])')" = 32 ]; then
  pass init "32 UDCs: $(jget 'd["udcs"][0]')..$(jget 'd["udcs"][-1]'), bus of dummy_udc.0=$(jget 'd["buses"]["dummy_udc.0"]') dummy_udc.31=$(jget 'd["buses"]["dummy_udc.31"]')"
else
  fail init "$(cat "$work/err")"
fi
dl init && pass init-idempotent "second init keeps $(jget 'len(d["udcs"])') UDCs" || fail init-idempotent "$(cat "$work/err")"

# usb_present JSONFILE VID PID SERIAL|-: host-side sysfs agrees with the plug JSON
usb_present() {
  local f=$1 vid=$2 pid=$3 ser=$4 p
  p=$(jget 'd["sysfs"]' "$f") || return 1
  [ -d "$p" ] || { echo "no $p"; return 1; }
  [ "$(sysattr "$p/idVendor")" = "$vid" ] || { echo "idVendor $(sysattr "$p/idVendor")"; return 1; }
  [ "$(sysattr "$p/idProduct")" = "$pid" ] || { echo "idProduct $(sysattr "$p/idProduct")"; return 1; }
  if [ "$ser" = - ]; then [ ! -e "$p/serial" ] || { echo "has serial"; return 1; }
  else [ "$(sysattr "$p/serial")" = "$ser" ] || { echo "serial '$(sysattr "$p/serial")'"; return 1; }; fi
  lsusb -d "$vid:$pid" | grep -q "ID $vid:$pid" || { echo "lsusb does not list $vid:$pid"; return 1; }
}

# ---- HID gadget
sec_hid() {
if dl create h1 hid --vid 1209 --pid 0001 --serial SER-H1 && dl plug h1 --wait 60; then
  cp "$work/out" "$work/h1.json"
  timing "plug-to-visible hid: $(jget 'd["plug_ms"]') ms (device in sysfs after $(jget 'd["visible_ms"]') ms)"
  info "hid h1: udc=$(jget 'd["udc"]') port_chain=$(jget 'd["port_chain"]') hidraw=$(jget 'd["hidraw"]') hidg=$(jget 'd["hidg"]') speed=$(jget 'd["speed"]')"
  check hid-visible "1209:0001 serial SER-H1 in sysfs and lsusb" usb_present "$work/h1.json" 1209 0001 SER-H1
  hr=$(jget 'd["hidraw"][0]' "$work/h1.json")
  if $LC hid-echo "$hr" --len 64 --count 200 >"$work/echo" 2>>"$log"; then
    pass hid-echo "200 x 64-byte reports via $hr"
    timing "hid gadget echo round trip (C daemon): $(jget '"median %s ms, p95 %s ms, max %s ms" % (d["rtt_ms_median"], d["rtt_ms_p95"], d["rtt_ms_max"])' "$work/echo")"
  else fail hid-echo "$(tail -1 "$log")"; fi
  p=$(jget 'd["sysfs"]' "$work/h1.json")
  if dl unplug h1 --wait 10 && [ ! -e "$p" ]; then
    pass hid-unplug "$p gone"; timing "unplug-to-gone hid: $(jget 'd["unplug_ms"]') ms"
  else fail hid-unplug "$(cat "$work/err")"; fi
  if dl plug h1 --wait 60 && [ -e "$p" ] && $LC hid-echo "$(jget 'd["hidraw"][0]')" --count 20 >>"$log" 2>&1; then
    pass hid-replug "back as $(jget 'd["port_chain"]') devnum $(jget 'd["devnum"]'), echo works"
  else fail hid-replug "$(cat "$work/err")"; fi
else
  fail hid-create-plug "$(cat "$work/err")"
fi

}

# ---- uhid
sec_uhid() {
if dl create u1 uhid --vid 1209 --pid 0002 --serial SER-U1 && dl plug u1 --wait 60; then
  cp "$work/out" "$work/u1.json"
  timing "plug-to-visible uhid: $(jget 'd["plug_ms"]') ms"
  id=$(jget 'd["hid_id"]')
  p=$(jget 'd["sysfs"]')
  ue=$(cat "$p/uevent" 2>/dev/null)
  if [[ $id == 0006:1209:0002.* ]] && grep -qx 'HID_UNIQ=SER-U1' <<<"$ue" && grep -qx 'HID_PHYS=devlab/u1' <<<"$ue"; then
    pass uhid-visible "$id uniq SER-U1 hidraw $(jget 'd["hidraw"]')"
  else fail uhid-visible "id=$id uevent=$(tr '\n' ' ' <<<"$ue")"; fi
  hr=$(jget 'd["hidraw"][0]')
  if $LC hid-echo "$hr" --len 64 --count 200 >"$work/echo" 2>>"$log"; then
    pass uhid-echo "200 x 64-byte reports via $hr"
    timing "uhid echo round trip (C daemon): $(jget '"median %s ms, p95 %s ms, max %s ms" % (d["rtt_ms_median"], d["rtt_ms_p95"], d["rtt_ms_max"])' "$work/echo")"
  else fail uhid-echo "$(tail -1 "$log")"; fi
  if dl unplug u1 --wait 10 && [ ! -e "$p" ]; then pass uhid-unplug "$p gone"; else fail uhid-unplug "$(cat "$work/err")"; fi
  if dl plug u1 --wait 60 && $LC hid-echo "$(jget 'd["hidraw"][0]')" --count 20 >>"$log" 2>&1; then
    pass uhid-replug "back as $(jget 'd["hid_id"]')"
  else fail uhid-replug "$(cat "$work/err")"; fi
else
  fail uhid-create-plug "$(cat "$work/err")"
fi

}

# ---- loopback
sec_loopback() {
if dl create lb loopback --vid 1209 --pid 0003 --serial SER-LB && dl plug lb --wait 60; then
  cp "$work/out" "$work/lb.json"
  timing "plug-to-visible loopback: $(jget 'd["plug_ms"]') ms"
  check lb-visible "1209:0003 serial SER-LB" usb_present "$work/lb.json" 1209 0003 SER-LB
  eps=$(jget '" ".join("%s/%s/%s" % (e["address"], e["type"], e["wMaxPacketSize"]) for e in d["interfaces"][0]["endpoints"])')
  info "loopback endpoints (interface 0): $eps"
  ein=$(jget '[e["address"] for e in d["interfaces"][0]["endpoints"] if e["type"]=="Bulk" and e["direction"]=="in"][0]')
  eout=$(jget '[e["address"] for e in d["interfaces"][0]["endpoints"] if e["type"]=="Bulk" and e["direction"]=="out"][0]')
  if $LC bulk-loopback "$(jget 'd["devnode"]')" --iface 0 --out "$eout" --in "$ein" --len 1000 --count 20 >"$work/bulk" 2>>"$log"; then
    pass lb-bulk-echo "20 x 1000 bytes OUT $eout -> IN $ein via usbfs"
    timing "loopback bulk round trip (Python usbfs, 1000 B): $(jget 'd["ms_per_round_trip"]' "$work/bulk") ms"
  else fail lb-bulk-echo "$(tail -1 "$log")"; fi
else
  fail lb-create-plug "$(cat "$work/err")"
fi

}

# ---- sourcesink
sec_sourcesink() {
if dl create ss sourcesink --vid 1209 --pid 0004 --serial SER-SS && dl plug ss --wait 60; then
  timing "plug-to-visible sourcesink: $(jget 'd["plug_ms"]') ms"
  cp "$work/out" "$work/ss.json"
  check ss-visible "1209:0004 serial SER-SS" usb_present "$work/ss.json" 1209 0004 SER-SS
  info "sourcesink endpoints (interface 0): $(jget '" ".join("%s/%s/%s" % (e["address"], e["type"], e["wMaxPacketSize"]) for e in d["interfaces"][0]["endpoints"])')"
  ein=$(jget '[e["address"] for e in d["interfaces"][0]["endpoints"] if e["type"]=="Bulk" and e["direction"]=="in"][0]')
  eout=$(jget '[e["address"] for e in d["interfaces"][0]["endpoints"] if e["type"]=="Bulk" and e["direction"]=="out"][0]')
  if $LC bulk-source "$(jget 'd["devnode"]')" --iface 0 --in "$ein" --out "$eout" --len 65536 --count 16 >"$work/bulk" 2>>"$log"; then
    pass ss-bulk "read 1 MiB from $ein, wrote 64 KiB to $eout"
    timing "sourcesink bulk IN (Python usbfs, sync 64 KiB): $(jget 'd["MBps"]' "$work/bulk") MB/s"
  else fail ss-bulk "$(tail -1 "$log")"; fi
else
  fail ss-create-plug "$(cat "$work/err")"
fi

}

# ---- composite
sec_composite() {
if dl create c1 composite --vid 1209 --pid 0005 --serial SER-C1 && dl plug c1 --wait 60; then
  cp "$work/out" "$work/c1.json"
  timing "plug-to-visible composite: $(jget 'd["plug_ms"]') ms"
  p=$(jget 'd["sysfs"]')
  shape=$(jget '" ".join("if%d:class%s:%s" % (i["number"], i["class"], i["driver"]) for i in d["interfaces"])')
  if [ "$(sysattr "$p/bNumInterfaces" | tr -d ' ')" = 2 ] && [ "$(jget 'd["interfaces"][0]["class"]')" = 03 ] \
     && [ "$(jget 'd["interfaces"][1]["class"]')" = ff ]; then
    pass composite-shape "2 interfaces: $shape"
  else fail composite-shape "bNumInterfaces=$(sysattr "$p/bNumInterfaces") $shape"; fi
  check composite-visible "1209:0005 serial SER-C1" usb_present "$work/c1.json" 1209 0005 SER-C1
  check composite-hid-echo "interface 0 echo via $(jget 'd["hidraw"][0]')" $LC hid-echo "$(jget 'd["hidraw"][0]')" --count 50
  ein=$(jget '[e["address"] for e in d["interfaces"][1]["endpoints"] if e["direction"]=="in"][0]')
  eout=$(jget '[e["address"] for e in d["interfaces"][1]["endpoints"] if e["direction"]=="out"][0]')
  check composite-bulk-echo "interface 1 loopback $eout -> $ein" $LC bulk-loopback "$(jget 'd["devnode"]')" --iface 1 --out "$eout" --in "$ein" --count 5
  info "composite hidg node: $(jget 'd["hidg"]') (h1 had $(jget 'd["hidg"]' "$work/h1.json"))"
else
  fail composite-create-plug "$(cat "$work/err")"
fi

}

# ---- no serial / stalled serial / empty serial
sec_noserial() {
if dl create ns loopback --pid 0006 --no-serial && dl plug ns --wait 60; then
  cp "$work/out" "$work/ns.json"
  if usb_present "$work/ns.json" 1209 0006 - >>"$log" 2>&1 && [ "$(jget 'd["iSerialNumber"]')" = 0 ] && [ "$(jget 'd["serial"]')" = null ]; then
    pass no-serial "no sysfs serial, iSerialNumber 0 (manufacturer=$(jget 'd["manufacturer"]') product=$(jget 'd["product"]'))"
  else fail no-serial "iSerialNumber=$(jget 'd["iSerialNumber"]') serial=$(jget 'd["serial"]')"; fi
  dl remove ns
else fail no-serial "$(cat "$work/err")"; fi
dl create nx loopback --no-serial --product P; rc=$?
[ $rc = 2 ] && one_line_err && pass no-serial-with-product-refused "rc=2" || fail no-serial-with-product-refused "rc=$rc $(cat "$work/err")"
for variant in "st --stalled-serial" "es --serial="; do
  set -- $variant
  if dl create "$1" loopback --pid 0007 "$2" && dl plug "$1" --wait 60; then
    ls=$(lsusb -v -d 1209:0007 2>/dev/null | grep -E '^ +i(Serial|Product)' | tr -s ' ' | tr '\n' ';')
    if [ "$(jget 'd["iSerialNumber"]')" != 0 ] && [ "$(jget 'd["serial"]')" = null ] && [ "$(jget 'd["product"]')" != null ]; then
      pass "serial-variant-$1" "$2: iSerialNumber=$(jget 'd["iSerialNumber"]'), no sysfs serial, product kept; lsusb -v: $ls"
    else fail "serial-variant-$1" "iSerialNumber=$(jget 'd["iSerialNumber"]') serial=$(jget 'd["serial"]') product=$(jget 'd["product"]')"; fi
    dl remove "$1" --wait 10
  else fail "serial-variant-$1" "$(cat "$work/err")"; fi
done
if dl create un uhid --pid 0008 --no-serial && dl plug un --wait 60; then
  p=$(jget 'd["sysfs"]')
  if grep -qx 'HID_UNIQ=' "$p/uevent"; then pass uhid-no-serial "HID_UNIQ empty"; else fail uhid-no-serial "$(grep UNIQ "$p/uevent")"; fi
  dl remove un
else fail uhid-no-serial "$(cat "$work/err")"; fi

}

# ---- hostile and long serials, verbatim
sec_serials() {
long126=$(printf 'S%.0s' $(seq 126))
i=0
for ser in '../../x' 'a/b' '#&%' ' lead and trail ' 'ünïcødé-€' "$long126" $'tab\there' '\x41'; do
  i=$((i + 1))
  if dl create "hs$i" loopback --pid "01$(printf %02x $i)" --serial "$ser" && dl plug "hs$i" --wait 60; then
    got=$(cat "$(jget 'd["sysfs"]')/serial" 2>/dev/null)
    if [ "$got" = "$ser" ] && [ "$(jget 'd["serial"]')" = "$ser" ]; then pass "serial-verbatim-$i" "$(printf %q "$ser") (${#ser} chars)"
    else fail "serial-verbatim-$i" "want $(printf %q "$ser") got $(printf %q "$got")"; fi
  else fail "serial-verbatim-$i" "$(printf %q "$ser"): $(cat "$work/err")"; fi
  dl remove "hs$i"
done
if dl create hs127 loopback --serial "${long126}X"; then fail serial-127 "127-byte serial accepted"
else rc=$?; one_line_err && [ $rc = 7 ] && pass serial-127 "rejected, rc=$rc: $(cat "$work/err")" || fail serial-127 "rc=$rc $(cat "$work/err")"; fi
if dl create ul uhid --serial "${long126:0:64}"; then fail uhid-uniq-64 "64-byte uniq accepted"
else rc=$?; one_line_err && pass uhid-uniq-64 "rejected, rc=$rc: $(cat "$work/err")" || fail uhid-uniq-64 "$(cat "$work/err")"; fi
if dl create uh uhid --pid 0009 --serial 'a/b ../#&%' && dl plug uh --wait 60 && grep -qx 'HID_UNIQ=a/b ../#&%' "$(jget 'd["sysfs"]')/uevent"; then
  pass uhid-uniq-verbatim "'a/b ../#&%'"
else fail uhid-uniq-verbatim "$(cat "$work/err")"; fi
dl remove uh

}

# ---- scripted reports
sec_script() {
printf '# three reports\n01 02 03 04\ndelay_ms 100\n0a0b0c0d\ndelay_ms 50\nff ee dd cc\n' >"$work/script.txt"
rdesc4="06 00 ff 09 01 a1 01 15 00 26 ff 00 75 08 95 04 09 01 81 02 95 04 09 01 91 02 c0"
for t in hid uhid; do
  if dl create "sc-$t" "$t" --pid 000a --report-desc "$rdesc4" --report-len 4 --hid-mode "script:$work/script.txt" \
     && dl plug "sc-$t" --wait 60 \
     && $LC hid-expect "$(jget 'd["hidraw"][0]')" 01020304 0a0b0c0d ffeeddcc $([ $t = hid ] && echo --trigger 4) >"$work/exp" 2>>"$log"; then
    pass "script-$t" "3 scripted 4-byte reports arrived at $(jget 'd["arrival_ms"]' "$work/exp") ms"
  else fail "script-$t" "$(cat "$work/err") $(tail -1 "$log")"; fi
  dl remove "sc-$t"
done

}

# ---- numbered reports (Report ID 1): the id byte goes out and comes back
sec_reportid() {
rdid="06 00 ff 09 01 a1 01 85 01 15 00 26 ff 00 75 08 95 08 09 01 81 02 95 08 09 01 91 02 c0"
for t in hid uhid; do
  if dl create "ri-$t" "$t" --pid 000d --report-desc "$rdid" --report-len 9 && dl plug "ri-$t" --wait 60 \
     && $LC hid-echo "$(jget 'd["hidraw"][0]')" --len 8 --report-id 1 --count 20 >>"$log" 2>&1; then
    pass "report-id-echo-$t" "20 x [01 + 8 bytes] echoed"
  else fail "report-id-echo-$t" "$(cat "$work/err") $(tail -1 "$log")"; fi
  dl remove "ri-$t"
done

}

# ---- Python fallback for the device side
sec_fallback() {
if DEVLAB_BIN=/nonexistent dl create pf hid --pid 000b && DEVLAB_BIN=/nonexistent dl plug pf --wait 60 --bin /nonexistent; then
  grep -q 'Python implementation' "$work/err" && pass fallback-warns "$(cat "$work/err")" || fail fallback-warns "no warning"
  if $LC hid-echo "$(jget 'd["hidraw"][0]')" --count 100 >"$work/echo" 2>>"$log"; then
    pass fallback-echo "Python hidg echo"
    timing "hid gadget echo round trip (Python fallback): median $(jget 'd["rtt_ms_median"]' "$work/echo") ms, p95 $(jget 'd["rtt_ms_p95"]' "$work/echo") ms"
  else fail fallback-echo "$(tail -1 "$log")"; fi
  dl remove pf
else fail fallback "$(cat "$work/err")"; fi
if dl create pu uhid --pid 000c && dl plug pu --wait 60 --bin /nonexistent && $LC hid-echo "$(jget 'd["hidraw"][0]')" --count 50 >>"$log" 2>&1; then
  pass fallback-uhid-echo "Python uhid echo"
else fail fallback-uhid-echo "$(cat "$work/err")"; fi
dl remove pu

}

# ---- clear errors
sec_errors() {
dl info nosuch; rc=$?
[ $rc = 3 ] && one_line_err && pass err-unknown-name "rc=3: $(cat "$work/err")" || fail err-unknown-name "rc=$rc $(cat "$work/err")"
dl create eb loopback --pid 00fe && dl plug eb --wait 60 && cp "$work/out" "$work/eb.json"
dl plug eb --udc dummy_udc.99; rc=$?
[ $rc -ne 0 ] && one_line_err && pass err-plugged-twice "rc=$rc: $(cat "$work/err")" || fail err-plugged-twice "rc=$rc"
dl create bad/name hid; rc=$?
[ $rc = 2 ] && one_line_err && pass err-bad-name "rc=2: $(cat "$work/err")" || fail err-bad-name "rc=$rc $(cat "$work/err")"
dl create x1 nosuchtype; rc=$?
[ $rc = 2 ] && one_line_err && pass err-bad-type "rc=2" || fail err-bad-type "rc=$rc $(cat "$work/err")"
dl create ud loopback --pid 00ff && { dl plug ud --udc dummy_udc.99; rc=$?
  [ $rc = 4 ] && one_line_err && pass err-no-such-udc "rc=4: $(cat "$work/err")" || fail err-no-such-udc "rc=$rc $(cat "$work/err")"
  dl plug ud --udc "$(jget 'd["udc"]' "$work/eb.json")"; rc=$?
  [ $rc = 4 ] && one_line_err && pass err-udc-busy "rc=4: $(cat "$work/err")" || fail err-udc-busy "rc=$rc $(cat "$work/err")"
  dl remove ud; }
dl remove eb

}

# ---- how many HID gadget functions can exist (counting those already made)
sec_hidlimit() {
pre=$(ls -d /sys/kernel/config/usb_gadget/*/functions/hid.* 2>/dev/null | wc -l)
n=0
rc=
for k in 1 2 3 4 5; do
  if dl create "hl$k" hid --pid "02$(printf %02x $k)"; then n=$((n + 1)); else rc=$?; break; fi
done
info "HID functions: $pre existing + $n more created; next create: rc=${rc:-none} $(cat "$work/err")"
if [ $((n + pre)) = 4 ] && [ "${rc:-0}" = 7 ] && one_line_err; then pass hid-limit "4 HID functions at once; 5th refused with rc=7"
else fail hid-limit "total $((n + pre)) HID functions, rc=${rc:-none}"; fi
for k in 1 2 3 4 5; do dl remove "hl$k"; done

}

# ---- parallel devlab invocations
sec_parallel() {
dl reset
for k in 0 1 2 3 4 5 6 7; do
  ( "$DL" create "par$k" loopback --pid "03$(printf %02x $k)" >/dev/null 2>>"$work/par.err" \
    && "$DL" plug "par$k" --wait 30 >"$work/par$k.json" 2>>"$work/par.err" ) &
done
wait
dl list
np=$(jget 'len([x for x in d if x["state"]=="plugged"])')
nu=$(jget 'len(set(x["udc"] for x in d))')
if [ "$np" = 8 ] && [ "$nu" = 8 ] && [ ! -s "$work/par.err" ]; then pass parallel "8 concurrent create+plug: 8 plugged on 8 distinct UDCs"
else fail parallel "plugged=$np distinct UDCs=$nu errors: $(head -3 "$work/par.err")"; fi
dl reset

}

# ---- 32 devices at once
sec_many() {
t0=$(date +%s%N)
ok=1
for k in $(seq 0 31); do echo "create d$k loopback --pid 10$(printf %02x $k) --serial D-$k"; done >"$work/batch"
dl batch <"$work/batch" || ok=0
t1=$(date +%s%N)
for k in $(seq 0 31); do dl plug "d$k" || { ok=0; break; }; done
t2=$(date +%s%N)
names=$(for k in $(seq 0 31); do printf 'd%d ' $k; done)
if [ $ok = 1 ] && dl wait $names --timeout 60; then
  t3=$(date +%s%N)
  cp "$work/out" "$work/all.json"
  good=$($PY -IS - "$work/all.json" <<'EOF'
import json, os, sys
d = json.load(open(sys.argv[1]))
good = 0
for i, x in enumerate(d):
    p = x["sysfs"]
    ser = open(p + "/serial").read().strip() if os.path.exists(p + "/serial") else None
    if x["present"] and ser == "D-%d" % i and open(p + "/idProduct").read().strip() == "10%02x" % i:
        good += 1
print(good)
EOF
)
  chains=$(jget '" ".join(sorted(set(x["port_chain"] for x in d)))' "$work/all.json" | wc -w)
  [ "$good" = 32 ] && [ "$chains" = 32 ] && pass 32-devices "32 loopbacks present with their serials on 32 buses" || fail 32-devices "good=$good chains=$chains"
  timing "32 devices: create all (one devlab batch) $(( (t1 - t0) / 1000000 )) ms, plug all (32 devlab plug, no wait) $(( (t2 - t1) / 1000000 )) ms, then all visible after $(( (t3 - t2) / 1000000 )) ms more"
  info "udc->bus: $(jget '" ".join("%s=%s" % (x["udc"], x["port_chain"]) for x in d[:4])' "$work/all.json") ... $(jget '"%s=%s" % (d[-1]["udc"], d[-1]["port_chain"])' "$work/all.json")"
else
  fail 32-devices "$(cat "$work/err")"
fi
dl create d32 loopback --pid 10ff && { dl plug d32; rc=$?
  [ $rc = 4 ] && one_line_err && pass err-no-free-udc "rc=4: $(cat "$work/err")" || fail err-no-free-udc "rc=$rc $(cat "$work/err")"; dl remove d32; }
t0=$(date +%s%N)
for k in $(seq 0 31); do echo "unplug d$k"; done | dl batch || ok=0
t1=$(date +%s%N)
if dl wait $names --gone --timeout 60; then
  t2=$(date +%s%N)
  left=$(ls -d /sys/bus/usb/devices/*-1 2>/dev/null | wc -l)
  [ "$left" = 0 ] && pass 32-unplug "all 32 gone from sysfs" || fail 32-unplug "$left devices left"
  timing "32 devices: unplug all (one devlab batch) $(( (t1 - t0) / 1000000 )) ms, all gone $(( (t2 - t1) / 1000000 )) ms later"
else fail 32-unplug "$(cat "$work/err")"; fi
t0=$(date +%s%N)
for k in $(seq 0 31); do echo "plug d$k"; done | dl batch || ok=0
if dl wait $names --timeout 60 && [ "$(jget 'sum(1 for x in d if x["present"])')" = 32 ]; then
  pass 32-replug "all 32 back"; timing "32 devices: replug all (one devlab batch) + all visible $(( ($(date +%s%N) - t0) / 1000000 )) ms"
else fail 32-replug "$(cat "$work/err")"; fi

}

# ---- reset
sec_reset() {
dl reset
dl list
if [ "$(jget 'len(d)')" = 0 ] && ! ls -d /sys/kernel/config/usb_gadget/devlab-* >/dev/null 2>&1 \
   && [ "$(ls -d /sys/bus/usb/devices/*-1 2>/dev/null | wc -l)" = 0 ] && ! pgrep -f 'devlab-(hidg|uhid)' >/dev/null; then
  pass reset "no devices, gadgets, host devices or daemons left"
else fail reset "list=$(cat "$work/out") daemons=$(pgrep -af 'devlab-(hidg|uhid)' | tr '\n' ' ')"; fi

}

all="hid uhid loopback sourcesink composite noserial serials script reportid fallback errors hidlimit parallel many reset"
for s in ${SECTIONS:-$all}; do
  if declare -F "sec_$s" >/dev/null; then echo "== $s" >>"$log"; sec_$s; else fail "section-$s" "no such section (have: $all)"; fi
done
cp "$DEVLAB_STATE"/*.log "$out/" 2>/dev/null
echo "$passed passed, $failed failed" >>"$res"
rm -rf "$work"
[ $failed = 0 ]

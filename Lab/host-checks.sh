#!/usr/bin/env bash
# Checks of devif-usb on the host itself, which has no USB at all (no
# /sys/bus/usb): it must say so in one line, never hang or crash, and keep
# its exit-status contract. Prints "host: N passed, N failed".
set -uo pipefail
bin=${1:-.build/debug/devif-usb}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export DEVIF_REGISTRY=$tmp/registry.sqlite
passed=0 failed=0
check() {  # check NAME COMMAND... : the command's exit status 0 means pass
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "PASS host: $name"
  else failed=$((failed + 1)); echo "FAIL host: $name"; fi
}
status_is() {  # status_is N COMMAND...
  local want=$1; shift
  timeout 20 "$@" >"$tmp/out" 2>"$tmp/err"; local got=$?
  [[ $got == "$want" ]] || { echo "  expected exit $want, got $got; stderr: $(head -c 300 "$tmp/err")"; return 1; }
}

no_usb_one_line() {
  [[ ! -e /sys/bus/usb ]] || { echo "  this host has /sys/bus/usb: check not applicable"; return 0; }
  status_is 0 "$bin" list --json || return 1
  [[ "$(cat "$tmp/out")" == "[]" ]] || { echo "  stdout: $(head -c 200 "$tmp/out")"; return 1; }
  [[ $(grep -c 'no USB on this machine' "$tmp/err") == 1 ]] || { echo "  stderr: $(cat "$tmp/err")"; return 1; }
}
check "no USB bus: list --json prints [] and says so in one line" no_usb_one_line
check "a bad --class exits 64" status_is 64 "$bin" list --class '{not-a-guid'
check "an unknown symbolic link exits 65" status_is 65 "$bin" info 'usb#vid_1209&pid_0001#X#{a5dcbf10-6530-11d2-901f-00c04fb951ed}'
check "a malformed symbolic link exits 65" status_is 65 "$bin" info '../../etc/passwd'
check "watch --count 0 exits 64" status_is 64 "$bin" watch --count 0
check "watch --timeout 1 exits 0" status_is 0 "$bin" watch --timeout 1 --json
sigterm_clean() {
  "$bin" watch >/dev/null 2>"$tmp/watch-err" & local pid=$!
  # The watcher's first notice comes after its signal handling is set up;
  # polled with a bound, as a shell has no other way to wait for a line.
  for _ in $(seq 200); do grep -q . "$tmp/watch-err" 2>/dev/null && break; sleep 0.05; done
  kill -TERM "$pid"; local t=0
  while kill -0 "$pid" 2>/dev/null && ((t < 100)); do sleep 0.1; t=$((t + 1)); done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; echo "  still running 10 s after SIGTERM"; return 1; }
  wait "$pid"; local rc=$?; [[ $rc == 0 ]] || { echo "  exit status $rc after SIGTERM"; return 1; }
}
check "SIGTERM ends a watch with status 0" sigterm_clean
help_has_codes() { "$bin" --help | grep -q '65  unknown symbolic link'; }
check "--help lists the exit statuses" help_has_codes
echo "host: $passed passed, $failed failed"
((failed == 0))

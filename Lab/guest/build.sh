#!/usr/bin/env bash
# Builds devlab's device-side helper programs on the host (the lab guest's
# root filesystem is read-only, and host binaries run there unchanged).
#   Lab/guest/build.sh OUT_DIR      e.g. Lab/guest/build.sh Lab/.cache/bin
# Idempotent: rebuilds only when a source is newer than its binary.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
cc=${CC:-gcc}
for prog in devlab-hidg devlab-uhid devlab-uhid-churn devlab-ffs; do
  src="$here/src/$prog.c"
  bin="$out/$prog"
  if [[ ! -x "$bin" || "$src" -nt "$bin" || "$here/src/common.h" -nt "$bin" ]]; then
    "$cc" -std=gnu11 -O2 -Wall -Wextra -Werror -o "$bin.tmp" "$src"
    mv -f "$bin.tmp" "$bin"
    printf 'build.sh: built %s\n' "$bin" >&2
  fi
done

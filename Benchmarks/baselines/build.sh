#!/usr/bin/env bash
# Builds the C baselines of the benchmark (see ../README.md, "The C baselines").
#   Benchmarks/baselines/build.sh OUT_DIR
# Rebuilds a program only when its source or common.h is newer than it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
cc=${CC:-gcc}
build() { # name pkg-config-module|- [extra flags]; SRC=file names another source
  local name=$1 pkg=$2; shift 2
  local src="$here/${SRC:-$name}.c" bin="$out/$name"
  if [[ -x "$bin" && ! "$src" -nt "$bin" && ! "$here/common.h" -nt "$bin" ]]; then return; fi
  local flags=() pc
  if [[ $pkg != - ]]; then
    pc=$(pkg-config --cflags --libs "$pkg") || { echo "build.sh: pkg-config knows no $pkg (install its -dev package)" >&2; exit 1; }
    read -ra flags <<<"$pc"
  fi
  "$cc" -std=gnu11 -O2 -Wall -Wextra -o "$bin.tmp" "$src" "${flags[@]}" "$@"
  mv -f "$bin.tmp" "$bin"
  printf 'build.sh: built %s\n' "$bin" >&2
}
SRC=bulk-stream build bulk-in libusb-1.0
SRC=bulk-stream build bulk-out libusb-1.0 -DBULK_OUT
build bulk-loopback libusb-1.0
build hid-echo hidapi-hidraw
build plug-arrival libusb-1.0 -pthread
build walltime -

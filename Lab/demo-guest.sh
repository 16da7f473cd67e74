#!/bin/bash
# Inside the lab VM: the watcher runs while gadgets come and go. The pauses
# are for a person to read along, not synchronisation: each plug waits for
# the kernel to see the device (devlab --wait).
set -euo pipefail
repo=$DEVIF_REPO
devlab() { "$repo/Lab/guest/devlab" "$@"; }
export DEVIF_REGISTRY=/tmp/devif-demo/registry.sqlite
devlab init --udcs 8 >/dev/null
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }

say "devif-usb watch $*   (runs in the background; the root hubs present at start are not shown without --enumerate)"
"$repo/.build/debug/devif-usb" watch "$@" &
watcher=$!
sleep 2

devlab create echo-hid hid --vid 1209 --pid d001 --serial DEMO-HID-1 --product "Echo HID" >/dev/null
devlab create loop loopback --vid 1209 --pid d002 --serial DEMO-LOOP-1 --product "Loopback" >/dev/null
devlab create combo composite --vid 1209 --pid d003 --serial DEMO-COMBO-1 --product "HID + bulk" >/dev/null
devlab create noserial sourcesink --vid 1209 --pid d004 --no-serial >/dev/null
devlab create virt uhid --vid 1209 --pid d005 --serial DEMO-UHID-1 --product "Virtual HID" >/dev/null

for name in echo-hid loop combo noserial virt; do
  say "plug $name"
  devlab plug "$name" --wait 20 >/dev/null
  sleep 1.5
done
for name in loop combo; do
  say "unplug $name"
  devlab unplug "$name" --wait 20 >/dev/null
  sleep 1.5
done
say "plug loop again: the same symbolic link"
devlab plug loop --wait 20 >/dev/null
sleep 1.5
say "stop the watcher (SIGINT)"
kill -INT "$watcher"
wait "$watcher" && echo "watcher exited with status 0"
say "devif-usb list --class usb-device"
"$repo/.build/debug/devif-usb" list --class usb-device
devlab reset >/dev/null

#!/usr/bin/env bash
# Checks Scripts/install and Scripts/uninstall in scratch folders: every file
# is installed and right (the binary runs; rules, unit and `rules generate`
# name the installed binary; completions are devif-usb's; the man page
# renders), and uninstall removes exactly those files and leaves everything
# else under the prefix. Two installs: --prefix into a scratch folder, and
# --destdir with the default prefix /usr/local (rules under DESTDIR/etc).
#
#   Lab/install-check.sh [BINARY]
#
# BINARY (e.g. .build/debug/devif-usb) is installed with --binary; without
# it, Scripts/install builds in release. Prints "ok ..."/"FAIL ..." per check
# and "install: N passed, N failed"; exits non-zero if a check failed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
install_args=()
if [[ -n ${1:-} ]]; then
  bin_arg=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
  install_args=(--binary "$bin_arg")
fi
scratch=$(mktemp -d) && scratch=$(cd "$scratch" && pwd -P)  # a real path: the rules name it
trap 'rm -rf "$scratch"' EXIT
export DEVIF_REGISTRY=$scratch/registry.sqlite
passed=0 failed=0
check() {  # check NAME COMMAND...: exit status 0 means ok
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok $name"
  else failed=$((failed + 1)); echo "FAIL $name"; fi
}
why() { echo "  $*"; return 1; }
contains() {  # contains FILE TEXT
  [[ -f $1 ]] || why "$1 is missing"
  grep -qF -- "$2" "$1" || why "$1 does not contain '$2'"
}
nonempty_for_devif() {  # nonempty_for_devif FILE: a non-empty completion script for devif-usb
  [[ -s $1 ]] || why "$1 is missing or empty"
  grep -q 'devif-usb' "$1" || why "$1 does not mention devif-usb"
  grep -q 'rules' "$1" || why "$1 does not complete the subcommand 'rules'"
}
runs() { "$@" >"$scratch/out" 2>"$scratch/err" || why "'$*' exited $?: $(head -c 300 "$scratch/err")"; }
man_renders() {  # man_renders FILE
  [[ -s $1 ]] || why "$1 is missing or empty"
  head -20 "$1" | grep -qE '^\.(Dd|TH)' || why "$1 does not start like a man page (.Dd or .TH): $(head -c 100 "$1")"
  if command -v man >/dev/null; then
    MANWIDTH=80 man -l "$1" >"$scratch/man.txt" 2>"$scratch/man-err" </dev/null || why "man -l $1 failed: $(head -c 300 "$scratch/man-err")"
  elif command -v mandoc >/dev/null; then
    mandoc -T ascii "$1" >"$scratch/man.txt" 2>"$scratch/man-err" || why "mandoc failed: $(head -c 300 "$scratch/man-err")"
  elif command -v groff >/dev/null; then
    groff -mandoc -T ascii "$1" >"$scratch/man.txt" 2>"$scratch/man-err" || why "groff failed: $(head -c 300 "$scratch/man-err")"
  else
    echo "  (no man, mandoc or groff here: only the first line was checked)"; return 0
  fi
  grep -q 'rules' "$scratch/man.txt" && grep -q 'watch' "$scratch/man.txt" ||
    why "the rendered page does not describe the subcommands rules and watch"
}
# Every path below ROOT except those the manifest lists (file or folder).
inventory() { (cd "$1" && find . -mindepth 1 | sed 's|^\.||' | LC_ALL=C sort); }

# --- 1: --prefix into a scratch folder --------------------------------------
prefix=$scratch/prefix
mkdir -p "$prefix/share/man/man1" "$prefix/bin"
echo keep >"$prefix/share/man/man1/sentinel.1"  # somebody else's files in the same folders
echo keep >"$prefix/bin/other-tool"
before=$(inventory "$prefix")
t=$SECONDS
if "$repo/Scripts/install" --prefix "$prefix" "${install_args[@]}" >"$scratch/install.txt" 2>&1; then
  echo "ok Scripts/install --prefix (in $((SECONDS - t)) s)"; passed=$((passed + 1))
else
  echo "FAIL Scripts/install --prefix: $(tail -5 "$scratch/install.txt")"; failed=$((failed + 1))
fi
p=$prefix
program=$p/bin/devif-usb
manifest=$p/share/devif/install-manifest.txt
check "binary: $program --help runs" runs "$program" --help
prints_version() {
  local out; out=$("$program" --version 2>&1) || why "--version exited $?: $out"
  [[ $out =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || why "--version printed '$out', not a version number"
}
check "binary: $program --version prints a version number" prints_version
binary_is_executable() { [[ -x $program ]] || why "not executable"; }
check "binary is executable" binary_is_executable
check "rules: lib/udev/rules.d/70-devif.rules runs $program" \
  contains "$p/lib/udev/rules.d/70-devif.rules" "IMPORT{program}=\"$program rules names "
no_usr_local() { ! grep -q /usr/local/bin/devif-usb "$p/lib/udev/rules.d/70-devif.rules" || why "the rules still name /usr/local/bin/devif-usb"; }
check "rules: no /usr/local/bin/devif-usb left in them" no_usr_local
check "unit: devif-links.service ExecStart runs $program" \
  contains "$p/lib/systemd/system/devif-links.service" "ExecStart=$program watch "
check "unit: its Documentation names the installed README" \
  contains "$p/lib/systemd/system/devif-links.service" "file://$p/share/doc/devif/Rules/README.md"
check "doc: share/doc/devif/Rules/README.md" contains "$p/share/doc/devif/Rules/README.md" "udev rules"
check "completion: bash" nonempty_for_devif "$p/share/bash-completion/completions/devif-usb"
check "completion: zsh (#compdef devif-usb)" contains "$p/share/zsh/site-functions/_devif-usb" "#compdef devif-usb"
check "completion: zsh" nonempty_for_devif "$p/share/zsh/site-functions/_devif-usb"
check "completion: fish" nonempty_for_devif "$p/share/fish/vendor_completions.d/devif-usb.fish"
check "man page: share/man/man1/devif-usb.1 renders" man_renders "$p/share/man/man1/devif-usb.1"
generate_names_it() {
  runs "$program" rules generate --quiet || return 1
  grep -qF "IMPORT{program}=\"$program rules names " "$scratch/out" || why "output does not run $program: $(grep IMPORT "$scratch/out")"
}
check "$program rules generate (no --program) names $program" generate_names_it
install_names_it() {
  runs "$program" rules install --no-reload --quiet --dest "$scratch/rules.d" || return 1
  contains "$scratch/rules.d/70-devif.rules" "IMPORT{program}=\"$program rules names "
}
check "$program rules install (no --program) writes rules that run $program" install_names_it
manifest_lists_all() {
  [[ -f $manifest ]] || why "$manifest is missing"
  local f n=0
  while read -r kind _ f; do
    [[ $kind == file ]] || continue; n=$((n + 1))
    [[ -f $f ]] || why "listed but missing: $f"
  done <"$manifest"
  ((n == 8)) || why "$n files listed, expected 8"
  # Every new file under the prefix is in the manifest (or is the manifest).
  local new; new=$(comm -13 <(echo "$before") <(inventory "$p"))
  while read -r f; do
    [[ -z $f || -d $p$f || $p$f == "$manifest" ]] && continue
    grep -q " $p$f\$" "$manifest" || why "installed but not in the manifest: $p$f"
  done <<<"$new"
}
check "manifest lists the 8 installed files" manifest_lists_all

t=$SECONDS
if "$repo/Scripts/uninstall" --prefix "$prefix" >"$scratch/uninstall.txt" 2>&1; then
  echo "ok Scripts/uninstall --prefix (in $((SECONDS - t)) s)"; passed=$((passed + 1))
else
  echo "FAIL Scripts/uninstall --prefix: $(tail -5 "$scratch/uninstall.txt")"; failed=$((failed + 1))
fi
exactly_restored() {
  local after; after=$(inventory "$prefix")
  [[ $after == "$before" ]] || why "the prefix differs from before install: $(diff <(echo "$before") <(echo "$after") | head -20 | tr '\n' ' ')"
}
check "uninstall: every installed file and folder gone, the sentinels and their folders kept" exactly_restored

# --- 2: --destdir with prefix /usr/local ------------------------------------
dest=$scratch/destdir
mkdir -p "$dest/etc/udev/rules.d"
echo keep >"$dest/etc/udev/rules.d/99-someone-else.rules"
before=$(inventory "$dest")
if "$repo/Scripts/install" --destdir "$dest" "${install_args[@]}" >"$scratch/install2.txt" 2>&1; then
  echo "ok Scripts/install --destdir (prefix /usr/local)"; passed=$((passed + 1))
else
  echo "FAIL Scripts/install --destdir: $(tail -5 "$scratch/install2.txt")"; failed=$((failed + 1))
fi
check "destdir: binary at DESTDIR/usr/local/bin/devif-usb runs" runs "$dest/usr/local/bin/devif-usb" --help
check "destdir: rules in DESTDIR/etc/udev/rules.d run /usr/local/bin/devif-usb" \
  contains "$dest/etc/udev/rules.d/70-devif.rules" 'IMPORT{program}="/usr/local/bin/devif-usb rules names '
check "destdir: unit in DESTDIR/usr/local/lib/systemd/system runs /usr/local/bin/devif-usb" \
  contains "$dest/usr/local/lib/systemd/system/devif-links.service" "ExecStart=/usr/local/bin/devif-usb watch "
no_destdir_inside() {
  ! grep -rlF -- "$dest" "$dest/etc" "$dest/usr/local/lib" "$dest/usr/local/share" >"$scratch/out" ||
    why "files name the DESTDIR: $(tr '\n' ' ' <"$scratch/out")"
}
check "destdir: no installed text file names DESTDIR" no_destdir_inside
# Rules changed since install (as `devif-usb rules install --uaccess` would
# change them) are kept by a reinstall and by uninstall.
echo '# changed by the admin' >>"$dest/etc/udev/rules.d/70-devif.rules"
reinstall_keeps() {
  "$repo/Scripts/install" --destdir "$dest" "${install_args[@]}" >"$scratch/install3.txt" 2>&1 ||
    why "reinstall failed: $(tail -3 "$scratch/install3.txt")"
  grep -q 'changed by the admin' "$dest/etc/udev/rules.d/70-devif.rules" || why "the changed rules were overwritten"
  grep -q "kept $dest/etc/udev/rules.d/70-devif.rules" "$scratch/install3.txt" || why "install did not say it kept them"
}
check "destdir reinstall: changed rules are kept and named" reinstall_keeps
# A file changed after install is left by uninstall, which names it and exits 1.
unit=$dest/usr/local/lib/systemd/system/devif-links.service
echo '# changed by the admin' >>"$unit"
"$repo/Scripts/uninstall" --destdir "$dest" >"$scratch/uninstall2.txt" 2>&1; urc=$?
changed_kept() {
  ((urc == 1)) || why "exit status $urc, expected 1 (a file was left): $(tail -3 "$scratch/uninstall2.txt")"
  grep -q "left in place: $unit (changed since install)" "$scratch/uninstall2.txt" ||
    why "uninstall did not name the changed unit: $(tail -3 "$scratch/uninstall2.txt")"
  [[ -f $unit ]] || why "the changed unit was removed"
  [[ -f $dest/etc/udev/rules.d/70-devif.rules ]] || why "the kept rules were removed"
  rm -f "$dest/etc/udev/rules.d/70-devif.rules" "$unit"
  rmdir -p "$(dirname "$unit")" 2>/dev/null
  local after; after=$(inventory "$dest")
  [[ $after == "$before" ]] || why "DESTDIR differs from before install: $(diff <(echo "$before") <(echo "$after") | head -20 | tr '\n' ' ')"
}
check "destdir uninstall: the changed unit and the kept rules stay (the unit named, exit 1), all else removed, the sentinel kept" changed_kept
no_manifest() {
  "$repo/Scripts/uninstall" --destdir "$dest" >"$scratch/out" 2>&1; local rc=$?
  ((rc == 66)) || why "exit $rc, expected 66"
  grep -q 'nothing was installed' "$scratch/out" || why "$(cat "$scratch/out")"
}
check "uninstall with nothing installed says so (exit 66)" no_manifest

echo "install: $passed passed, $failed failed"
((failed == 0))

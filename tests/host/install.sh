#!/usr/bin/env bash
# `make install` into a scratch DESTDIR, on the host (no VM): every file where a Linux
# networking tool puts it, with its mode; the module's aliases known to depmod, so that
# `ip link add ... type vip` and vipd's first netlink request load it; the unit pointing at
# the installed daemon; man pages and completions that render and parse.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/tests/lib/tap.sh"
tap_plan 9
dest=$(mktemp -d)
at_exit rm -rf "$dest"
if out=$(make -s -C "$ROOT" install DESTDIR="$dest" 2>&1); then
  ok "make install DESTDIR=... succeeds"
else
  not_ok "make install DESTDIR=... succeeds"; _tap_show "$out"
fi
kver=$(cat "$(cat "$ROOT/.vip-kdir")/include/config/kernel.release")
mode() { stat -c %a "$dest/$1" 2>/dev/null; }
check "the module is in /lib/modules/$kver/extra, 0644" test "$(mode lib/modules/$kver/extra/vip.ko)" = 644
check "depmod knows its aliases (rtnl-link-vip, the vip generic netlink family)" bash -c \
  "grep -q 'alias rtnl-link-vip vip' '$dest/lib/modules/$kver/modules.alias' &&
   grep -q 'alias net-pf-16-proto-16-family-vip vip' '$dest/lib/modules/$kver/modules.alias'"
check "vipd in /usr/sbin and vipctl in /usr/bin, 0755, and they run" bash -c \
  "[ \$(stat -c %a '$dest/usr/sbin/vipd') = 755 ] && [ \$(stat -c %a '$dest/usr/bin/vipctl') = 755 ] &&
   '$dest/usr/sbin/vipd' --version && '$dest/usr/bin/vipctl' --version"
check "the systemd unit starts the installed daemon" bash -c \
  "grep -q '^ExecStart=/usr/sbin/vipd ' '$dest/lib/systemd/system/vipd.service' && [ -x '$dest/usr/sbin/vipd' ]"
check "the example configuration is in /etc/vipd and the documentation" bash -c \
  "cmp -s '$ROOT/userland/vipd/dist/vipd.toml' '$dest/etc/vipd/vipd.toml' &&
   [ -f '$dest/usr/share/doc/vip/vipd.toml.example' ] && [ -f '$dest/usr/share/doc/vip/threat-model.md' ]"
check "an existing /etc/vipd/vipd.toml is kept by a second install" bash -c \
  "echo '# mine' > '$dest/etc/vipd/vipd.toml' && make -s -C '$ROOT' install-userland DESTDIR='$dest' >/dev/null &&
   [ \"\$(cat '$dest/etc/vipd/vipd.toml')\" = '# mine' ]"
check "man pages vipd(8) and vipctl(1)" bash -c \
  "zcat '$dest/usr/share/man/man8/vipd.8.gz' | grep -q '^.TH vipd 8' &&
   zcat '$dest/usr/share/man/man1/vipctl.1.gz' | grep -q '^.TH vipctl 1'"
check "bash, zsh and fish completions for vipctl (bash's parses)" bash -c \
  "bash -n '$dest/usr/share/bash-completion/completions/vipctl' &&
   [ -s '$dest/usr/share/zsh/vendor-completions/_vipctl' ] && [ -s '$dest/usr/share/fish/vendor_completions.d/vipctl.fish' ]"

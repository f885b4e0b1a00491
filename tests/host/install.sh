#!/usr/bin/env bash
# `make install` into a scratch DESTDIR, on the host (no VM): every file where a Linux
# networking tool puts it, with its mode; the module's aliases known to depmod, so that
# `ip link add ... type vip` and vipd's first netlink request load it; the unit pointing at
# the installed daemon; man pages and completions that render and parse. Then the module's
# DKMS build against the test kernel from its Debian package (`make deb-dkms`), and the
# userland's Debian package (`make deb`).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/tests/lib/tap.sh"
tap_plan 20
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

# DKMS, in trees of its own under the scratch directory (the host's /var/lib/dkms untouched).
# DKMS adds CC=clang LD=ld.lld for a kernel built with LLVM; here they are LLVM 19, the
# test kernel's (tests/vm/env.sh).
source "$ROOT/tests/vm/env.sh"
kdir=$(cat "$ROOT/.vip-kdir")
dkms_dir=$(mktemp -d)
at_exit rm -rf "$dkms_dir"
version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$ROOT/dkms.conf")
src=$dkms_dir/root/usr/src/vip-$version
check "make install-dkms lays out the module's source with dkms.conf in /usr/src/vip-$version, no build output" bash -c \
  "make -s -C '$ROOT' install-dkms DESTDIR='$dkms_dir/root' >/dev/null && [ -f '$src/dkms.conf' ] && [ -f '$src/Kbuild' ] &&
   [ -f '$src/vip_mod/xmit.rs' ] && [ -f '$src/include/uapi/linux/vip.h' ] &&
   [ -z \"\$(find '$src' -name '*.o' -o -name '*.ko' -o -name bindings_generated.rs)\" ]"
# The same source as a Debian package (vip-dkms): DKMS builds from the unpacked package.
dkms_deb=$ROOT/userland/target/debian/vip-dkms_${version}_all.deb
rm -f "$dkms_deb"
if out=$(make -s -C "$ROOT" deb-dkms 2>&1) && [ -f "$dkms_deb" ]; then
  ok "make deb-dkms builds $(basename "$dkms_deb")"
else
  not_ok "make deb-dkms builds vip-dkms_${version}_all.deb"; _tap_show "$out"
fi
dkms_field() { dpkg-deb -f "$dkms_deb" "$1" 2>/dev/null; }
check "it is package vip-dkms, architecture all, depending on dkms" bash -c \
  "[ '$(dkms_field Package)' = vip-dkms ] && [ '$(dkms_field Architecture)' = all ] &&
   grep -q '^dkms' <<< '$(dkms_field Depends)'"
dpkg-deb -x "$dkms_deb" "$dkms_dir/pkg" 2>/dev/null
in_package=$(cd "$dkms_dir/pkg/usr/src" 2>/dev/null && find . -type f | sort)
laid_out=$(cd "$dkms_dir/root/usr/src" && find . -type f | sort)
check "its /usr/src/vip-$version is exactly what make install-dkms lays out ($(wc -l <<< "$in_package") files)" \
  test -n "$laid_out" -a "$in_package" = "$laid_out"
scripts=$(mktemp -d)
at_exit rm -rf "$scripts"
check "its postinst hands vip $version to DKMS's common.postinst on configure, its prerm removes it, both sh" bash -c \
  "dpkg-deb -e '$dkms_deb' '$scripts' && sh -n '$scripts/postinst' && sh -n '$scripts/prerm' &&
   grep -q '^DKMS_NAME=vip$' '$scripts/postinst' && grep -q '^DKMS_VERSION=$version$' '$scripts/postinst' &&
   grep -q 'common.postinst \"\$DKMS_NAME\" \"\$DKMS_VERSION\"' '$scripts/postinst' &&
   grep -q '^DKMS_VERSION=$version$' '$scripts/prerm' &&
   grep -q 'dkms remove -m \"\$DKMS_NAME\" -v \"\$DKMS_VERSION\" --all' '$scripts/prerm'"
mkdir -p "$dkms_dir/tree" "$dkms_dir/bin"
ln -s "$(command -v clang$VIP_LLVM)" "$dkms_dir/bin/clang"
ln -s "$(command -v ld.lld$VIP_LLVM)" "$dkms_dir/bin/ld.lld"
trees=(--sourcetree "$dkms_dir/pkg/usr/src" --dkmstree "$dkms_dir/tree")
built=$dkms_dir/tree/vip/$version/$kver/x86_64/module/vip.ko
if out=$(dkms add -m vip -v "$version" "${trees[@]}" 2>&1 &&
  PATH=$dkms_dir/bin:$PATH VIP_LLVM=$VIP_LLVM VIP_RUSTC=$VIP_RUSTC VIP_BINDGEN=$VIP_BINDGEN \
    dkms build -m vip -v "$version" -k "$kver" --kernelsourcedir "$kdir" "${trees[@]}" 2>&1) &&
  [ "$(modinfo -F vermagic "$built" 2>/dev/null | cut -d' ' -f1)" = "$kver" ] &&
  modinfo -F alias "$built" | grep -qx rtnl-link-vip; then
  ok "dkms builds the package's module against the test kernel's tree ($kver), with its aliases"
else
  not_ok "dkms builds the package's module against the test kernel's tree ($kver), with its aliases"
  _tap_show "$out$(cat "$dkms_dir/tree/vip/$version/build/make.log" 2>/dev/null | tail -5)"
fi

# A kernel without Rust (a distribution's usual one) is skipped, not failed: DKMS's exit
# status 77, which its kernel hooks and common.postinst take as "not for this kernel".
mkdir -p "$dkms_dir/norust"
printf 'CONFIG_X86_64=y\n' > "$dkms_dir/norust/.config"
out=$(dkms build -m vip -v "$version" -k 6.1.0-norust --kernelsourcedir "$dkms_dir/norust" "${trees[@]}" 2>&1)
rc=$?
check "it skips a kernel without Rust (CONFIG_RUST unset): exit 77, no build (got $rc)" \
  test $rc = 77 -a ! -e "$dkms_dir/tree/vip/$version/6.1.0-norust/x86_64/module/vip.ko"

# The Debian package (cargo-deb): the files `make install` lays out, with the configuration
# as a conffile, and a unit that is installed but neither enabled nor started.
deb_out=$(make -s -C "$ROOT" deb 2>&1); deb_rc=$?
debs=("$ROOT"/userland/target/debian/vip_*.deb)
deb=${debs[0]}
if [ $deb_rc = 0 ] && [ ${#debs[@]} = 1 ] && [ -f "$deb" ]; then
  ok "make deb builds one package ($(basename "$deb"))"
else
  not_ok "make deb builds one package"; _tap_show "$deb_out"
fi
field() { dpkg-deb -f "$deb" "$1" 2>/dev/null; }
check "it is package vip, section net, depending on libc6 and iproute2, /etc/vipd/vipd.toml a conffile" bash -c \
  "[ '$(field Package)' = vip ] && [ '$(field Section)' = net ] &&
   grep -q libc6 <<< '$(field Depends)' && grep -q iproute2 <<< '$(field Depends)' &&
   dpkg-deb --ctrl-tarfile '$deb' | tar -xO ./conffiles | grep -qx /etc/vipd/vipd.toml"
# Every file install-userland put in the package's staging tree is in the package (the
# unit in /usr/lib/systemd/system, where cargo-deb puts it: the same place on Debian 12).
listed=$(dpkg-deb -c "$deb" 2>/dev/null | awk '{ print $6 }' | sed 's|^\./|/|')
staged=$(cd "$ROOT/userland/target/deb-root" 2>/dev/null && find . -type f | sed 's|^\./|/|; s|^/lib/|/usr/lib/|' | sort)
missing=$(comm -23 <(echo "$staged") <(echo "$listed" | sort))
check "it holds every file make install lays out (unit, man pages, completions, docs), none missing${missing:+: $missing}" \
  test -n "$staged" -a -z "$missing"
unpacked=$(mktemp -d)
at_exit rm -rf "$unpacked"
check "unpacked, its vipd and vipctl run, and its scripts enable or start nothing" bash -c \
  "dpkg-deb -x '$deb' '$unpacked' && '$unpacked/usr/sbin/vipd' --version && '$unpacked/usr/bin/vipctl' --version &&
   ! dpkg-deb --ctrl-tarfile '$deb' | tar -xO --wildcards './post*' './pre*' 2>/dev/null |
     grep -E 'systemctl (--no-block )?(enable|start)|deb-systemd-invoke (start|restart)|deb-systemd-helper enable'"

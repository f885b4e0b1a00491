# What every scenario script sources first: TAP helpers, paths, module helpers.
_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$_lib/tap.sh"
VIP_ROOT=${VIP_ROOT:-$(cd "$_lib/../.." && pwd)}
VIP_KO=${VIP_KO:-$VIP_ROOT/vip.ko}
export PATH=$VIP_ROOT/userland/target/release:$PATH

# Kernel modules built with the test kernel (ipip, wireguard, nftables, ...).
kmod() { modprobe -d "${VIP_MODROOT:?}" "$@"; }

vip_loaded() { [ -d /sys/module/vip ]; }
vip_load() { vip_loaded || insmod "$VIP_KO"; }
vip_unload() { ! vip_loaded || rmmod vip; }

# paced_cat FILE CHUNK SECONDS: FILE on stdout, CHUNK bytes at a time, SECONDS apart (a
# transfer slow enough to be in flight while a host moves).
paced_cat() {
  python3 -c '
import sys, time
data, chunk, pause = open(sys.argv[1], "rb").read(), int(sys.argv[2]), float(sys.argv[3])
for i in range(0, len(data), chunk):
    sys.stdout.buffer.write(data[i:i + chunk]); sys.stdout.flush(); time.sleep(pause)
' "$@"
}

# What every scenario script sources first: TAP helpers, paths, module helpers.
_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$_lib/tap.sh"
VIP_ROOT=${VIP_ROOT:-$(cd "$_lib/../.." && pwd)}
VIP_KO=${VIP_KO:-$VIP_ROOT/vip.ko}
export PATH=$VIP_ROOT/userland/target/release:$PATH

# Kernel modules built with the test kernel (ipip, wireguard, nftables, ...).
kmod() { modprobe -d "${VIP_MODROOT:?}" "$@"; }

# scaled N: N on the test kernel, a hundredth of it on the debug kernel, whose KASAN,
# kmemleak and lockdep make the kernel's work ten to fifty times slower under TCG (the full
# counts run on the test kernel in the same `make test`; the debug kernel is there to catch
# memory and locking errors, which the same code paths show at any count).
scaled() { if [ "${VIP_KERNEL_VARIANT:-}" = debug ]; then echo $(($1 / 100)); else echo "$1"; fi; }
# by_kernel DEFAULT DEBUG: DEFAULT on the test kernel, DEBUG on the debug kernel.
by_kernel() { if [ "${VIP_KERNEL_VARIANT:-}" = debug ]; then echo "$2"; else echo "$1"; fi; }

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

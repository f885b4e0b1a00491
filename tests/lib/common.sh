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

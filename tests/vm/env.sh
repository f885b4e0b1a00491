# Shared settings for the build and VM scripts. Sourced, not run.
# Everything the project installs or builds lives under $VIP_CACHE.
VIP_CACHE=${VIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vip}
VIP_TOOLS=$VIP_CACHE/tools
VIP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The kernel is built with Debian's rustc, whose rust-src matches it; userland uses rustup's.
VIP_RUSTC=/usr/bin/rustc
VIP_LLVM=-19
VIP_BINDGEN=$VIP_TOOLS/bin/bindgen
KERNEL_SOURCE_PKG=linux-source-6.12

vip_log() { printf '[vip] %s\n' "$*" >&2; }
vip_die() { printf '[vip] error: %s\n' "$*" >&2; exit 1; }

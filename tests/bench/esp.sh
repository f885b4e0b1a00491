#!/usr/bin/env bash
# ESP benchmark (issue 11), side by side in one boot: TCP throughput (iperf3) and ping
# latency between two hosts behind a router over
#   plain       routing between the physical addresses, nothing added;
#   vip         vip0 without ESP (the IPIP data path alone);
#   vip+esp-*   vip0 carrying transport-mode ESP between the two VIPs, keyed with vipd's
#               own library and parameters (vip-xfrm through vip-esp: ESN, a 4096-packet
#               replay window, 128-bit ICV, policies requiring ESP both ways);
#   esp-*       the same transport-mode ESP between physical addresses (a second address
#               on each host, so that its policies touch none of the other modes' packets);
#   wireguard   the kernel's WireGuard between the physical addresses;
# with both AEADs (*-chacha: rfc7539esp(chacha20,poly1305), what vipd picks without AES
# instructions, as in this VM; *-gcm: rfc4106(gcm(aes))). Rounds alternate the modes so
# that the emulator's drift hits all of them alike; medians (min-max) are compared.
# Targets (issue 11): vip+esp at least 1.0x WireGuard's throughput and at most 1.05x its
# latency, and at least 0.95x plain ESP's throughput with the same AEAD.
# timeout: 1800
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/topology.sh"
source "$(dirname "$0")/../lib/vip.sh"
tap_plan 5
ROUNDS=${BENCH_ROUNDS:-5}
SECONDS_PER_RUN=${BENCH_SECONDS:-5}

vip_unload; vip_load
at_exit vip_unload
kmod wireguard
topo_create a:1 b:2
A=$(topo_addr a) B=$(topo_addr b)
vip_host a 240.0.0.1
vip_host b 240.0.0.2
vip_map a b
vip_map b a
esp() { local host=$1; shift; on "$host" vip-esp "$@"; }
key() { head -c 36 /dev/urandom | base64 -w0; }

# A second local address per pair on each side, with a route that makes it the source.
# pair NAME A_ADDR B_ADDR AEAD|none: on vip0 if the addresses are VIPs, else on the LAN.
declare -A TARGET=([plain]=$B) SOURCE=([plain]=$A)
pair() {
  local name=$1 a=$2 b=$3 aead=$4
  TARGET[$name]=$b SOURCE[$name]=$a
  if [[ $a == 240.* ]]; then
    if [ "$a" != 240.0.0.1 ]; then
      on a ip addr add "$a/32" dev vip0; on b ip addr add "$b/32" dev vip0
      on a ip route add "$b/32" dev vip0 src "$a"; on b ip route add "$a/32" dev vip0 src "$b"
      on a vipctl map replace "$b" via "$B" local "$a"
      on b vipctl map replace "$a" via "$A" local "$b"
    fi
  else
    on a ip addr add "$a/24" dev eth1; on b ip addr add "$b/24" dev eth2
  fi
  [ "$aead" = none ] && return
  # vipd's order: policies, inbound SPIs reserved, then the SAs keyed.
  esp a policy --local "$a" --peer "$b"; esp b policy --local "$b" --peer "$a"
  local spi_a spi_b k_ab k_ba
  spi_a=$(esp a spi --local "$a" --peer "$b"); spi_b=$(esp b spi --local "$b" --peer "$a")
  k_ab=$(key) k_ba=$(key)
  esp a sa --local "$a" --peer "$b" --aead "$aead" --dir in --spi "$spi_a" --key "$k_ba"
  esp a sa --local "$a" --peer "$b" --aead "$aead" --dir out --spi "$spi_b" --key "$k_ab"
  esp b sa --local "$b" --peer "$a" --aead "$aead" --dir in --spi "$spi_b" --key "$k_ab"
  esp b sa --local "$b" --peer "$a" --aead "$aead" --dir out --spi "$spi_a" --key "$k_ba"
}
pair vip 240.0.0.1 240.0.0.2 none
pair vip+esp-chacha 240.0.1.1 240.0.1.2 chacha20-poly1305
pair vip+esp-gcm 240.0.2.1 240.0.2.2 aes-gcm
pair esp-chacha 192.0.2.201 198.51.100.201 chacha20-poly1305
pair esp-gcm 192.0.2.202 198.51.100.202 aes-gcm

# WireGuard between the physical addresses, its endpoints fixed (nobody moves here).
wg_key_a=$(wg genkey) wg_key_b=$(wg genkey)
wg_up() { # wg_up HOST OWN_KEY PEER_KEY PEER_ADDR OWN_TUNNEL_ADDR
  on "$1" ip link add wg0 type wireguard
  on "$1" wg set wg0 listen-port 51820 private-key <(echo "$2") \
    peer "$(wg pubkey <<<"$3")" allowed-ips 10.99.0.0/24 endpoint "$4:51820"
  on "$1" ip addr add "$5/24" dev wg0
  on "$1" ip link set wg0 up
}
wg_up a "$wg_key_a" "$wg_key_b" "$B" 10.99.0.1
wg_up b "$wg_key_b" "$wg_key_a" "$A" 10.99.0.2
TARGET[wireguard]=10.99.0.2 SOURCE[wireguard]=10.99.0.1
MODES=(plain vip vip+esp-chacha esp-chacha wireguard vip+esp-gcm esp-gcm)

on b iperf3 -s -D
sleep 1
reachable() { local m; for m in "${MODES[@]}"; do on a ping -c1 -W2 -I "${SOURCE[$m]}" "${TARGET[$m]}" >/dev/null || return 1; done; }
check "every mode carries a ping (${MODES[*]})" eventually 10 reachable
diag "the VM's CPU: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-); AES instructions: $(grep -qw aes /proc/cpuinfo && echo yes || echo no), SSSE3: $(grep -qw ssse3 /proc/cpuinfo && echo yes || echo no), AVX2: $(grep -qw avx2 /proc/cpuinfo && echo yes || echo no)"
diag "MTUs: eth1 $(on a cat /sys/class/net/eth1/mtu), vip0 $(on a cat /sys/class/net/vip0/mtu), wg0 $(on a cat /sys/class/net/wg0/mtu)"

declare -A RESULTS=()
# throughput MODE: Mbit/s received; latency MODE: average RTT in microseconds.
throughput() {
  on a iperf3 -c "${TARGET[$1]}" -B "${SOURCE[$1]}" -t "$SECONDS_PER_RUN" -J |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e6, 1))'
}
latency() {
  on a ping -q -c 200 -i 0.005 -I "${SOURCE[$1]}" "${TARGET[$1]}" |
    sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p' | python3 -c 'import sys; print(round(float(sys.stdin.read()) * 1000))'
}
for round in $(seq "$ROUNDS"); do
  for mode in "${MODES[@]}"; do
    RESULTS[$mode.tput]+="$(throughput "$mode") "
    RESULTS[$mode.lat]+="$(latency "$mode") "
  done
done

# The encrypted modes really were: their outbound SA (or WireGuard peer) carried the bytes.
out_bytes() { esp a list | python3 -c '
import json, sys
print(sum(s["bytes"] for s in map(json.loads, sys.stdin) if s["src"] == sys.argv[1] and s["dst"] == sys.argv[2]))' "$1" "$2"; }
carried() {
  local m
  for m in vip+esp-chacha vip+esp-gcm esp-chacha esp-gcm; do
    (( $(out_bytes "${SOURCE[$m]}" "${TARGET[$m]}") > ROUNDS * 1000000 )) || return 1
  done
  (( $(on a wg show wg0 transfer | awk '{ print $3 }') > ROUNDS * 1000000 ))
}
check "the ESP and WireGuard modes' bytes went through their SAs and peer" carried
in_drops() { on b awk '$1 ~ /^XfrmIn(StateProtoError|NoStates|StateSeqError|StateInvalid)$/ { s += $2 } END { print s + 0 }' /proc/net/xfrm_stat; }
check "no ESP packet was dropped on B (integrity, replay, no state: $(in_drops))" test "$(in_drops)" = 0

# summary KEY: "median (min-max)"; median KEY: the median alone.
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
summary() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { printf "%s (%s-%s)", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, v[1], v[NR] }'; }
declare -A T=() L=()
for mode in "${MODES[@]}"; do
  T[$mode]=$(median <<<"${RESULTS[$mode.tput]}") L[$mode]=$(median <<<"${RESULTS[$mode.lat]}")
  diag "$(printf '%-15s throughput %-26s Mbit/s  latency %-20s us' "$mode" \
    "$(summary <<<"${RESULTS[$mode.tput]}")" "$(summary <<<"${RESULTS[$mode.lat]}")")"
done
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.3f}')" "$1" "$2"; }
for aead in chacha gcm; do
  v=vip+esp-$aead
  diag "$aead: throughput $v/wireguard   $(ratio "${T[$v]}" "${T[wireguard]}")   (target >= 1.0)"
  diag "$aead: latency    $v/wireguard   $(ratio "${L[$v]}" "${L[wireguard]}")   (target <= 1.05)"
  diag "$aead: throughput $v/esp-$aead   $(ratio "${T[$v]}" "${T[esp-$aead]}")   (target >= 0.95)"
  diag "$aead: latency    $v/esp-$aead   $(ratio "${L[$v]}" "${L[esp-$aead]}")"
  diag "$aead: throughput $v/vip         $(ratio "${T[$v]}" "${T[vip]}")   (the cost of encrypting)"
done
# Which implementations the kernel picked (the highest priority its CPU can run).
drivers() {
  awk '/^name/ { n = $3 } /^driver/ { d = $3 } /^priority/ { if (n ~ /^(rfc4106\(gcm\(aes\)\)|rfc7539esp\(chacha20,poly1305\)|gcm\(aes\)|chacha20|poly1305|__ctr\(aes\))$/ && $3 > best[n]) { best[n] = $3; drv[n] = d } }
       END { for (n in drv) printf "%s=%s ", n, drv[n] }' /proc/crypto
}
diag "ciphers in use: $(drivers)"
diag "throughput wireguard/plain       $(ratio "${T[wireguard]}" "${T[plain]}")"
diag "throughput vip/plain             $(ratio "${T[vip]}" "${T[plain]}")"
ok "benchmark ran ($ROUNDS rounds of ${#MODES[@]} modes, ${SECONDS_PER_RUN}s of iperf3 each)"
# Every mode still carries a ping: nothing fell over during the runs.
check "every mode still carries a ping" reachable

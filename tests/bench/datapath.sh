#!/usr/bin/env bash
# Data-path benchmark, side by side in one boot: TCP throughput (iperf3) and ping latency
# between two hosts behind a router, over plain routing, the kernel's ipip tunnel, and
# vip with 10 and with 1,000,000 mappings on both ends. Rounds alternate the modes so that
# drift in the emulator hits all of them alike; medians are compared.
# timeout: 1800
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/topology.sh"
source "$(dirname "$0")/../lib/vip.sh"
tap_plan 1
ROUNDS=${BENCH_ROUNDS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-5}

vip_unload; vip_load
at_exit vip_unload
kmod ipip
topo_create a:1 b:2
vip_host a 240.0.0.1
vip_host b 240.0.0.2
vip_map a b
vip_map b a
for i in $(seq 3 11); do on a vipctl map add 240.0.1.$i via 192.0.2.$i; done
on a ip link add ipip1 type ipip local "$(topo_addr a)" remote "$(topo_addr b)"
on b ip link add ipip1 type ipip local "$(topo_addr b)" remote "$(topo_addr a)"
on a ip addr add 198.18.0.1/30 dev ipip1; on a ip link set ipip1 up
on b ip addr add 198.18.0.2/30 dev ipip1; on b ip link set ipip1 up
on b iperf3 -s -D
sleep 1

declare -A TARGET=([plain]=$(topo_addr b) [ipip]=198.18.0.2 [vip]=240.0.0.2)
declare -A RESULTS=()

# throughput MODE: Mbit/s received; latency MODE: average RTT in microseconds.
throughput() {
  on a iperf3 -c "${TARGET[$1]}" -t "$SECONDS_PER_RUN" -J |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e6, 1))'
}
latency() {
  on a ping -q -c 200 -i 0.005 "${TARGET[$1]}" |
    sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p' | python3 -c 'import sys; print(round(float(sys.stdin.read()) * 1000))'
}
measure() { # measure LABEL MODE
  RESULTS[$1.tput]+="$(throughput "$2") "
  RESULTS[$1.lat]+="$(latency "$2") "
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for round in $(seq "$ROUNDS"); do
  for mode in plain ipip vip; do measure "$mode" "$mode"; done
done
# A million mappings on both ends, then vip again.
for host in a b; do
  awk 'BEGIN { for (i = 1; i <= 999990; i++)
    printf "map add 241.%d.%d.%d via 192.0.2.%d\n", int(i / 65536), int(i / 256) % 256, i % 256, i % 250 + 1 }' |
    on "$host" vipctl batch -
done
diag "mappings on A: $(on a vipctl -j info | python3 -c 'import json,sys; print(json.load(sys.stdin)["mappings"])')"
for round in $(seq "$ROUNDS"); do measure vip1m vip; measure plain_after plain; done

for key in plain ipip vip vip1m; do
  declare "T_$key=$(median <<<"${RESULTS[$key.tput]}")" "L_$key=$(median <<<"${RESULTS[$key.lat]}")"
  diag "$(printf '%-6s throughput %8s Mbit/s (runs: %s)  latency %6s us (runs: %s)' \
    "$key" "$(eval echo \$T_$key)" "${RESULTS[$key.tput]}" "$(eval echo \$L_$key)" "${RESULTS[$key.lat]}")"
done
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.3f}')" "$1" "$2"; }
diag "throughput vip/ipip:       $(ratio "$T_vip" "$T_ipip")   (target >= 0.97)"
diag "throughput vip/plain:      $(ratio "$T_vip" "$T_plain")   (target >= 0.90)"
diag "latency vip/plain:         $(ratio "$L_vip" "$L_plain")   (target <= 1.03)"
diag "latency vip/ipip:          $(ratio "$L_vip" "$L_ipip")"
diag "throughput vip 1M/10:      $(ratio "$T_vip1m" "$T_vip")   (target >= 0.98)"
diag "plain again after loading: $(median <<<"${RESULTS[plain_after.tput]}") Mbit/s (drift check)"
ok "benchmark ran"

#!/usr/bin/env bash
# systemd-resolved owns 127.0.0.53 on A: vipd registers as vip0's DNS server for every name
# (~.), asks the server resolved knows for A's LAN, and follows it when it changes; names
# go through resolved to VIPs (legacy names to their addresses), vipd registers again
# after resolved restarts, and hands vip0 back when it stops. resolved is Debian's,
# unpacked by setup-host (installing it would take the host's /etc/resolv.conf), with a
# system bus of its own in the guest; B runs a plain vipd.
# timeout: 600
# duration: 35
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/dns.sh"
RESOLVED_ROOT=${VIP_TOOLS:-}/resolved
if ! [ -x "$RESOLVED_ROOT/lib/systemd/systemd-resolved" ]; then
  tap_plan 1
  not_ok "systemd-resolved is unpacked in $RESOLVED_ROOT (tests/vm/setup-host does it)"
  exit 1
fi
tap_plan 22

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 c:1 e:1 dns
dns_start "a b" "c"
C=$(topo_addr c) E=$(topo_addr e)
# A second server for the zone, on E, with a name the first one does not have: which
# server vipd asks shows in the answer.
dns_start_forged e "elsewhere IN A 192.0.2.77"
W=$(mktemp -d)
at_exit rm -rf "$W"

# The guest's /etc is its own (an overlay): resolved's user and its bus policy go there
# (the bus, as messagebus, cannot read the cache under root's home).
grep -q '^systemd-resolve:' /etc/passwd ||
  useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin systemd-resolve
cp "$RESOLVED_ROOT/usr/share/dbus-1/system.d/org.freedesktop.resolve1.conf" /etc/dbus-1/system.d/
bus_stop() { kill "$BUS_PID" 2>/dev/null && wait "$BUS_PID" 2>/dev/null; rm -f /run/dbus/pid /run/dbus/system_bus_socket; }
mkdir -p /run/dbus /run/systemd
rm -f /run/dbus/pid /run/dbus/system_bus_socket
dbus-daemon --system --nofork --nosyslog > "$W/dbus.log" 2>&1 &
BUS_PID=$!
at_exit bus_stop
eventually 10 busctl --system list --no-pager > /dev/null 2>&1

resolved_start() {
  ip netns exec vip-a env SYSTEMD_LOG_LEVEL=debug "$RESOLVED_ROOT/lib/systemd/systemd-resolved" \
    >> "$W/resolved.log" 2>&1 &
  RESOLVED_PID=$!
  eventually 20 on a "$RESOLVED_ROOT/usr/bin/resolvectl" status > /dev/null 2>&1
}
resolved_stop() { kill "$RESOLVED_PID" 2>/dev/null && wait "$RESOLVED_PID" 2>/dev/null; return 0; }
rctl() { on a "$RESOLVED_ROOT/usr/bin/resolvectl" "$@"; }
at_exit resolved_stop
# A's programs ask resolved, as on a distribution that runs it.
echo "nameserver 127.0.0.53" > /etc/netns/vip-a/resolv.conf
resolved_start
# What DHCP or networkd would tell resolved: the LAN's server.
rctl dns eth1 "$TOPO_DNS_ADDR"
link_dns_has() { rctl dns "$1" | grep -qF " $2"; }
check "resolved runs on A and knows the LAN's server" link_dns_has eth1 "$TOPO_DNS_ADDR"

# A's vipd: no upstream servers of its own (resolved's), updates to the zone's server.
vipd_a() {
  local mode=$1
  cat <<EOF
fqdn = "a.$DNS_ZONE"
state_dir = "$DNS_DIR/a/state"
control_socket = "$DNS_DIR/a/control.sock"

[resolved]
mode = "$mode"

[upstream]
timeout_ms = 1000

[update]
key_file = "$DNS_DIR/a/a.key"
server = "$TOPO_DNS_ADDR:53"
ttl = 5

[negotiation]
retransmit_ms = 300
EOF
}
start_a() {
  vipd_a "$1" > "$DNS_DIR/a/vipd.toml"
  ip netns exec vip-a env VIPD_LOG=info,vipd=debug vipd -c "$DNS_DIR/a/vipd.toml" >> "$DNS_DIR/a/vipd.log" 2>&1 &
  VIPD_PID[a]=$!
}
start_a auto
eventually 20 grep -q "vipd ready" "$DNS_DIR/a/vipd.log"
vipd_start b
check "vipd starts on A (resolved.mode = auto, the default) and registers with resolved" \
  grep -q "registered with systemd-resolved" "$DNS_DIR/a/vipd.log"
check "resolved's server for vip0 is vipd, 127.0.0.153" link_dns_has vip0 127.0.0.153
routes_everything() { rctl domain vip0 | grep -qF ' ~.'; }
check "vip0 is the route for every name (~.)" routes_everything
link_settings() {
  local out; out=$(rctl status vip0) || return 1; echo "$out"
  grep -q '+DefaultRoute' <<<"$out" && grep -q -- '-LLMNR' <<<"$out" &&
    grep -q -- '-mDNS' <<<"$out" && grep -q 'DNSSEC=no' <<<"$out"
}
check "vip0: default route, no LLMNR, no mDNS, no DNSSEC" link_settings
has_service_address() { on a ip -4 addr show dev vip0 | grep -q 'inet 127.0.0.153/32 scope host'; }
check "vip0 holds vipd's address 127.0.0.153/32 (host scope)" has_service_address
# Straight to vipd: what it answers is what its upstream says.
vipd_says() {
  local got; got=$(on a dig +short +tries=1 +timeout=3 @127.0.0.153 "$1" A)
  echo "vipd answers $1: ${got:-nothing}"; [ "$got" = "$2" ]
}
check "vipd asks the LAN's server, which resolved gave it" vipd_says "c.$DNS_ZONE" "$C"
stub_is_resolveds() {
  local l; l=$(on a ss -Hlnup 'sport = :53') || return 1
  # (resolved binds its stub to lo: 127.0.0.53%lo:53)
  l=$(grep -E '127\.0\.0\.53(%lo)?:53 ' <<<"$l"); echo "$l"
  grep -q systemd-resolve <<<"$l" && ! grep -q '"vipd"' <<<"$l"
}
check "vipd leaves 127.0.0.53 to resolved" stub_is_resolveds

# B shares the guest's one system bus, but not A's network namespace.
check "B's vipd (mode auto) leaves A's resolved alone: another network namespace" \
  grep -q "systemd-resolved (PID [0-9]*) runs in another network namespace" "$DNS_DIR/b/vipd.log"
vip_of_b() { on a getent ahostsv4 "b.$DNS_ZONE" | awk 'NR == 1 { print $1 }'; }
b_is_a_vip() { in_vip_range "$(vip_of_b)"; }
check "A's programs get B's VIP through resolved and vipd" eventually 20 b_is_a_vip
reaches_b_through_vip0() {
  local vip; vip=$(vip_of_b)
  in_vip_range "$vip" && on a ip route get "$vip" | grep -q ' dev vip0 ' &&
    on a ping -c2 -i0.3 -W3 "b.$DNS_ZONE"
}
check "A reaches B by name, at its VIP, through vip0" reaches_b_through_vip0
resolves_to() {
  local got; got=$(on a getent ahostsv4 "$1" | awk 'NR == 1 { print $1 }')
  echo "$1: ${got:-no address}"
  [ "$got" = "$2" ] || { rctl query "$1" 2>&1 | head -2; return 1; }
}
legacy_is() { resolves_to "c.$DNS_ZONE" "$1"; }
check "a legacy name resolves to its address (resolved, vipd, the LAN's server)" legacy_is "$C"

# vipd's answer comes from the LAN's server: NXDOMAIN (not a timeout or SERVFAIL).
nxdomain_via_vipd() { on a dig +tries=1 +timeout=3 @127.0.0.153 "elsewhere.$DNS_ZONE" A | grep -q 'status: NXDOMAIN'; }
check "the LAN's server has no name elsewhere.$DNS_ZONE (E's has)" nxdomain_via_vipd
# The host moves to a network with another server: resolved learns it, vipd follows.
rctl dns eth1 "$E"
rctl flush-caches
check "vipd follows resolved's server when it changes (a name only E's server has)" eventually 15 vipd_says "elsewhere.$DNS_ZONE" 192.0.2.77
check "and so do A's programs, through resolved" eventually 15 resolves_to "elsewhere.$DNS_ZONE" 192.0.2.77
rctl dns eth1 "$TOPO_DNS_ADDR"
rctl flush-caches
check "and back to the LAN's server when the host returns" eventually 15 nxdomain_via_vipd

# Someone resets vip0 in resolved: vipd registers again.
marks=$(grep -c "registered with systemd-resolved again" "$DNS_DIR/a/vipd.log")
rctl revert vip0
registered_again() {
  (($(grep -c "registered with systemd-resolved again" "$DNS_DIR/a/vipd.log") > marks)) &&
    link_dns_has vip0 127.0.0.153 && routes_everything
}
check "vipd registers again when vip0 is reset in resolved (resolvectl revert)" eventually 15 registered_again
# resolved restarts: names go through vipd again.
resolved_stop
resolved_start
rctl dns eth1 "$TOPO_DNS_ADDR"
names_through_restarted() { link_dns_has vip0 127.0.0.153 && legacy_is "$C"; }
check "names resolve through the restarted resolved, vip0 registered" eventually 20 names_through_restarted

# vipd stops: resolved stops sending names to it, and the LAN's server answers directly.
vipd_stop a
handed_back() { local out; out=$(rctl dns vip0) || return 1; echo "$out"; ! grep -qF 127.0.0.153 <<<"$out"; }
check "vipd hands vip0 back to resolved when it stops" handed_back
rctl flush-caches
if eventually 15 legacy_is "$C" > "$W/out" 2>&1; then
  ok "with vipd stopped, names still resolve (resolved asks the LAN's server)"
else
  not_ok "with vipd stopped, names still resolve (resolved asks the LAN's server)"
  tail -3 "$W/out" | sed 's/^/# /'
  grep -E "member=(SetLink|RevertLink)|Received SIG|Failed|rror|Removing|Revert|Flush" "$W/resolved.log" | grep -v "member=Hello" | tail -40 | sed 's/^/# resolved: /'
fi

# A resolved that validates DNSSEC: "auto" refuses (every name would lose it), naming it.
a_exited() { ! kill -0 "${VIPD_PID[a]}" 2>/dev/null; }
resolved_stop
printf '[Resolve]\nDNSSEC=allow-downgrade\n' > /etc/systemd/resolved.conf
at_exit rm -f /etc/systemd/resolved.conf
resolved_start
start_a auto
eventually 20 a_exited
check "mode auto with a DNSSEC-validating resolved: vipd refuses to start, saying why" \
  bash -c "tail -3 '$DNS_DIR/a/vipd.log' | grep -q 'DNSSEC=allow-downgrade.*resolved.mode = \"on\" to accept'"
rm -f /etc/systemd/resolved.conf

# Without resolved: mode "on" refuses to start, saying why.
resolved_stop
start_a on
eventually 20 a_exited
check "mode on without resolved: vipd exits with an error naming resolved" \
  bash -c "tail -3 '$DNS_DIR/a/vipd.log' | grep -q 'systemd-resolved is not on the system bus'"

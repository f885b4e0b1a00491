# Moves for the benchmarks, timed tightly. Sourced after topology.sh.
#   fast_move HOST LAN     HOST's address off its LAN, on LAN, in one `ip -batch`
#   move DIR one|two|make  A moves (one), A and B at once (two), or A make-before-break
#                          (make: the new address and route on, MAKE_OVERLAP s later the
#                          old address off); sets T0 and T1
#   other HOST             the LAN HOST is not on
# With MOVE_MPTCP set, each move also changes the host's MPTCP endpoints as mptcpd does on
# address events: the old address's endpoint (id = its LAN) deleted, which closes the
# subflows that use it, and one for the new address added (MPTCP_FLAGS[HOST]), which opens
# subflows from it (flag subflow) or announces it (signal). mptcp_endpoints sets them up.
MAKE_OVERLAP=${MAKE_OVERLAP:-1}
declare -A MPTCP_FLAGS=([a]=subflow [b]=signal)

# The ip commands that bring HOST onto LAN / take it off LAN.
_move_on() {
  local h=$1 to=$2
  printf '%s\n' "address add $(topo_addr "$h" "$to")/24 dev eth$to" \
    "route replace default via ${TOPO_LAN[$to]}.1 dev eth$to"
  [ -z "${MOVE_MPTCP:-}" ] ||
    echo "mptcp endpoint add $(topo_addr "$h" "$to") dev eth$to id $to ${MPTCP_FLAGS[$h]}"
}
_move_off() {
  local h=$1 from=$2
  echo "address del $(topo_addr "$h" "$from")/24 dev eth$from"
  [ -z "${MOVE_MPTCP:-}" ] || echo "mptcp endpoint delete id $from"
}
# batch HOST LAN: the ip commands of a break-before-make move (topo_move's, in one batch).
batch() { _move_off "$1" "${_topo_host_lan[$1]}"; _move_on "$1" "$2"; }
fast_move() { batch "$1" "$2" | ip -n "$TOPO_PREFIX$1" -batch -; _topo_host_lan[$1]=$2; }
other() { echo $((3 - ${_topo_host_lan[$1]})); }
# mptcp_endpoints HOST...: each host's MPTCP endpoint is its current address, and the
# limits allow a second subflow and an announced address.
mptcp_endpoints() {
  local h
  for h in "$@"; do
    on "$h" ip mptcp endpoint flush
    on "$h" ip mptcp limits set subflows 2 add_addr_accepted 2
    on "$h" ip mptcp endpoint add "$(topo_addr "$h")" dev "eth${_topo_host_lan[$h]}" \
      id "${_topo_host_lan[$h]}" "${MPTCP_FLAGS[$h]}"
  done
}
# move DIR SCENARIO: one (A moves) or two (A and B at once). Under emulation starting a
# process takes tens to hundreds of ms, so ip is started beforehand, reading its batch
# from a FIFO; the move is writing the batch. Sets T0 (written) and T1 (ip exited).
move() {
  local dir=$1 scen=$2 h hosts=a pids=() lines=() fd
  [ "$scen" = two ] && hosts="a b"
  for h in $hosts; do
    rm -f "$dir/move-$h"; mkfifo "$dir/move-$h"
    ip -n "$TOPO_PREFIX$h" -batch "$dir/move-$h" & pids+=($!)
    lines+=("$(batch "$h" "$(other "$h")")")
  done
  sleep 0.5 # ip is running and waits on its FIFO
  local i=0
  T0=$EPOCHREALTIME
  if [ "$scen" = make ]; then # ip reads each line as it comes
    exec {fd}> "$dir/move-a"
    _move_on a "$(other a)" >&"$fd"
    sleep "$MAKE_OVERLAP"
    _move_off a "${_topo_host_lan[a]}" >&"$fd"
    exec {fd}>&-
  else
    for h in $hosts; do printf '%s\n' "${lines[$i]}" > "$dir/move-$h"; i=$((i + 1)); done
  fi
  wait "${pids[@]}"
  T1=$EPOCHREALTIME
  for h in $hosts; do _topo_host_lan[$h]=$(other "$h"); done
}

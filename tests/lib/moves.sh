# Break-before-make moves for the benchmarks, timed tightly. Sourced after topology.sh.
#   fast_move HOST LAN     HOST's address off its LAN, on LAN, in one `ip -batch`
#   move DIR one|two       A moves (one), or A and B at once (two); sets T0 and T1
#   other HOST             the LAN HOST is not on

# batch HOST LAN: the ip commands of a break-before-make move (topo_move's, in one batch).
batch() {
  local h=$1 to=$2 from=${_topo_host_lan[$1]}
  printf '%s\n' "address del $(topo_addr "$h" "$from")/24 dev eth$from" \
    "address add $(topo_addr "$h" "$to")/24 dev eth$to" \
    "route replace default via ${TOPO_LAN[$to]}.1 dev eth$to"
}
fast_move() { batch "$1" "$2" | ip -n "$TOPO_PREFIX$1" -batch -; _topo_host_lan[$1]=$2; }
other() { echo $((3 - ${_topo_host_lan[$1]})); }
# move DIR SCENARIO: one (A moves) or two (A and B at once). Under emulation starting a
# process takes tens to hundreds of ms, so ip is started beforehand, reading its batch
# from a FIFO; the move is writing the batch. Sets T0 (written) and T1 (ip exited).
move() {
  local dir=$1 scen=$2 h hosts=a pids=() lines=()
  [ "$scen" = two ] && hosts="a b"
  for h in $hosts; do
    rm -f "$dir/move-$h"; mkfifo "$dir/move-$h"
    ip -n "$TOPO_PREFIX$h" -batch "$dir/move-$h" & pids+=($!)
    lines+=("$(batch "$h" "$(other "$h")")")
  done
  sleep 0.5 # ip is running and waits on its FIFO
  local i=0
  T0=$EPOCHREALTIME
  for h in $hosts; do printf '%s\n' "${lines[$i]}" > "$dir/move-$h"; i=$((i + 1)); done
  wait "${pids[@]}"
  T1=$EPOCHREALTIME
  for h in $hosts; do _topo_host_lan[$h]=$(other "$h"); done
}

# KTAP output for scenario scripts. Sourced.
#   tap_plan N             announce N test cases (call once, first)
#   check DESC CMD...      a case that passes if CMD succeeds
#   check_fails DESC CMD.. a case that passes if CMD fails
#   ok DESC / not_ok DESC  a case decided by the script
#   skip DESC WHY          a case that cannot be decided here, and why (KTAP's SKIP)
#   diag TEXT              a comment line
#   at_exit CMD...         run CMD when the script ends (last registered, first run)
# With VIP_TAP_TIMES set, each case is preceded by the script's running time (a comment),
# to find where a slow script spends it.
# The script's exit status is non-zero if any case failed.
_tap_n=0
_tap_failed=0

tap_plan() { echo "KTAP version 1"; echo "1..$1"; }
diag() { printf '# %s\n' "$*"; }
_tap_time() { [ -z "${VIP_TAP_TIMES:-}" ] || diag "at ${SECONDS}s"; }
ok() { _tap_time; _tap_n=$((_tap_n + 1)); echo "ok $_tap_n $*"; }
not_ok() { _tap_time; _tap_n=$((_tap_n + 1)); _tap_failed=1; echo "not ok $_tap_n $*"; }
skip() { _tap_time; _tap_n=$((_tap_n + 1)); echo "ok $_tap_n $1 # SKIP $2"; }

# Runs CMD, showing its output as comments only when it fails.
check() {
  local desc=$1 out; shift
  if out=$("$@" 2>&1); then ok "$desc"; else not_ok "$desc"; _tap_show "$out"; fi
}
check_fails() {
  local desc=$1 out; shift
  if out=$("$@" 2>&1); then not_ok "$desc"; _tap_show "$out"; else ok "$desc"; fi
}
_tap_show() { [ -n "$1" ] && printf '%s\n' "$1" | tail -20 | sed 's/^/# /'; return 0; }

# Retries CMD for up to SECONDS (for state that settles asynchronously). Timed by
# /proc/uptime, which a test that steps the wall clock does not move.
_uptime_cs() { local u; read -r u _ < /proc/uptime; echo $((10#${u/./})); }
eventually() {
  local deadline=$(($(_uptime_cs) + $1 * 100)); shift
  until "$@"; do (($(_uptime_cs) < deadline)) || return 1; sleep 0.2; done
}

_tap_cleanups=()
at_exit() { _tap_cleanups=("$(printf '%q ' "$@")" "${_tap_cleanups[@]}"); }
_tap_exit() {
  local rc=$? cmd
  for cmd in "${_tap_cleanups[@]}"; do eval "$cmd" >/dev/null 2>&1; done
  exit $((rc || _tap_failed))
}
trap _tap_exit EXIT

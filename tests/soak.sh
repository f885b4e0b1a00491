#!/usr/bin/env bash
# The mobility soak (`make soak`): for SOAK_SECONDS (600 by default), a move every
# SOAK_INTERVAL seconds (4), one- and two-sided, break- and make-before, while TCP, UDP and
# a ping run from A to B and vipd restarts twice; the streams stay intact within generous
# bounds and neither the daemons nor the mapping slab grow (tests/lib/soak.sh says what is
# checked). `make test` runs the short version, tests/90-soak.sh (60 s).
# timeout: 900
# (`make soak` sets VIP_SCRIPT_TIMEOUT to SOAK_SECONDS + 300, overriding this.)
SOAK_SECONDS=${SOAK_SECONDS:-600}
source "$(dirname "$0")/lib/soak.sh"

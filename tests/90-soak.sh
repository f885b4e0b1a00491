#!/usr/bin/env bash
# The mobility soak's short version, in `make test` (issue 14): tests/lib/soak.sh for 60 s
# (VIP_SOAK_SECONDS), about a dozen moves of every kind with vipd restarted twice, under
# TCP, UDP and ping. `make soak` runs the long one (10 minutes by default).
# timeout: 420
# duration: 95
SOAK_SECONDS=${VIP_SOAK_SECONDS:-60}
source "$(dirname "$0")/lib/soak.sh"

#!/usr/bin/env bash
# Stop the daemons .ci/slurm-up.sh started, by their pids (newest first).
SLURM_PIDS=${SLURM_PIDS:-/tmp/serialct-slurm.pids}
[ -f "$SLURM_PIDS" ] || exit 0
tac "$SLURM_PIDS" | while read -r pid; do kill "$pid" 2>/dev/null || true; done
sleep 2
tac "$SLURM_PIDS" | while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done
rm -f "$SLURM_PIDS"

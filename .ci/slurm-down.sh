#!/usr/bin/env bash
# Stop the daemons .ci/slurm-up.sh started, by their pids (newest first), and remove the
# slurm.conf it wrote: with a config naming a controller that is down, every `snakemake` start
# waits ~9 s (the SLURM plugin's scontrol probe times out).
SLURM_PIDS=${SLURM_PIDS:-/tmp/serialct-slurm.pids}
if [ -f "$SLURM_PIDS" ]; then
  tac "$SLURM_PIDS" | while read -r pid; do kill "$pid" 2>/dev/null || true; done
  sleep 2
  tac "$SLURM_PIDS" | while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done
  rm -f "$SLURM_PIDS"
fi
if grep -qx "ClusterName=serialct" /etc/slurm/slurm.conf 2>/dev/null; then
  rm -f /etc/slurm/slurm.conf
fi

#!/usr/bin/env bash
# CI: the workflow through a real single-node SLURM cluster (.ci/slurm-up.sh), checked.
#   1. bring up munge, MariaDB, slurmdbd, slurmctld, slurmd (apt-installs them if missing)
#   2. draw a tiny synthetic cohort (2 patients) and run it with --profile profiles/slurm,
#      the lesion rule asking SLURM for a (fake) GPU while inference stays on the CPU
#   3. a run whose caps exceed the node stops before submitting, naming the setting
#   4. sacct: every job went through sbatch, none failed, the lesion job holds gres/gpu;
#      its lesion jobs were served by one warm worker (serialct.lesion.worker)
#   5. the same cohort run locally: tables/scans.tsv must be equal
#   6. stop the daemons by pid (trap), whatever happened
# Every cluster call is wrapped in `timeout -k`: a job pending forever fails CI, never hangs it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SNAKEMAKE="$ROOT/.venv/bin/snakemake"
PYTHON="$ROOT/.venv/bin/python"
WORK=${SLURM_CHECK_DIR:-$(mktemp -d /tmp/serialct-slurm-check.XXXXXX)}
RUN_TIMEOUT=${SLURM_RUN_TIMEOUT:-900}
export SLURM_PIDS=${SLURM_PIDS:-/tmp/serialct-slurm.pids}
start=$(date +%s)

cleanup() {
  # squeue may list leftovers of a failed run; cancel only this run's jobs, then stop daemons
  if [ -n "${RUN_ID:-}" ]; then scancel --name "$RUN_ID" 2>/dev/null || true; fi
  bash "$ROOT/.ci/slurm-down.sh"
}
trap cleanup EXIT
trap "exit 143" TERM INT

echo "== slurm: bring-up"
timeout -k 10 300 bash .ci/slurm-up.sh

echo "== slurm: cohort in $WORK"
"$ROOT/.venv/bin/serialct" synth "$WORK/cohort" --patients 2 --seed 3 --shape 32,96,96 >/dev/null
for where in slurm local; do
  "$PYTHON" - "$WORK/cohort/config.yaml" "$WORK/$where" <<'PY'
import sys
from pathlib import Path

import yaml

config = yaml.safe_load(Path(sys.argv[1]).read_text())
config["results"] = str(Path(sys.argv[2]) / "results")
config["device"] = "cpu"  # the fake GPU is a SLURM resource only; inference runs on the CPU
Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
Path(sys.argv[2], "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
PY
done

node_mem=$(scontrol show node -o | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)

echo "== slurm: caps larger than every node stop the run before it submits (never a hang)"
t0=$(date +%s)
set +e
timeout -k 10 300 "$SNAKEMAKE" --profile profiles/slurm \
  --configfile "$WORK/slurm/config.yaml" --set-resources lesion:gpu=1 \
  --cores "$(( $(nproc) + 2 ))" --resources mem_mb="$node_mem" gpu=1 \
  >"$WORK/too_big.log" 2>&1
status=$?
set -e
too_big_s=$(( $(date +%s) - t0 ))
if [ "$status" -eq 0 ] || [ "$status" -ge 124 ] \
   || ! grep -q "no node can ever run this" "$WORK/too_big.log" \
   || grep -q "submitted with SLURM jobid" "$WORK/too_big.log"; then
  tail -30 "$WORK/too_big.log"
  echo "ci: a run whose jobs no node can hold did not stop at once (status $status)"
  exit 1
fi
grep -o "no node can ever run this.*" "$WORK/too_big.log" | head -1 | cut -c1-400
echo "ci: stopped before submitting anything, status $status, after ${too_big_s} s"
echo "== slurm: run (node: $(nproc) CPUs, ${node_mem} MB, gpu:1)"
t0=$(date +%s)
set +e
# lesion:gpu=1 asks SLURM for a GPU although config device is cpu (README "Running on your
# cluster", fake-GPU test); --cores / --resources cap each group job at what the node has.
timeout -k 30 "$RUN_TIMEOUT" "$SNAKEMAKE" --profile profiles/slurm \
  --configfile "$WORK/slurm/config.yaml" \
  --set-resources lesion:gpu=1 \
  --cores "$(nproc)" --resources mem_mb="$node_mem" gpu=1 \
  --slurm-init-seconds-before-status-checks 5 --seconds-between-status-checks 5 \
  >"$WORK/slurm.log" 2>&1
status=$?
set -e
slurm_s=$(( $(date +%s) - t0 ))
RUN_ID=$(sed -n 's/^SLURM run ID: //p' "$WORK/slurm.log" | head -1)
if [ "$status" -ne 0 ]; then
  tail -50 "$WORK/slurm.log"
  squeue -o "%i %j %T %r %C %m %b" || true
  echo "ci: the SLURM run failed with status $status after ${slurm_s} s"
  exit 1
fi

echo "== slurm: accounting (run $RUN_ID)"
# --starttime: sacct's default window starts at today's midnight, so a run that crosses
# midnight would otherwise list no jobs
sacct -n -P -X --name "$RUN_ID" --starttime "$(date -d "@$((t0 - 60))" +%Y-%m-%dT%H:%M:%S)" \
  --format=JobID,State,ReqTRES,AllocTRES,Elapsed >"$WORK/sacct.tsv"
cat "$WORK/sacct.tsv"
"$PYTHON" - "$WORK/sacct.tsv" "$WORK/slurm.log" <<'PY'
import re
import sys
from pathlib import Path

rows = [line.split("|") for line in Path(sys.argv[1]).read_text().splitlines() if line]
log = Path(sys.argv[2]).read_text()
# the plugin's log folder names the rules of each job: .../slurm_logs/group_gpu_scan_lesion/23.log
rules = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: .*/slurm_logs/([^/]+)/", log))
ids = {row[0] for row in rows}
if not rows or ids != set(rules):
    sys.exit(f"ci: sacct lists {sorted(ids)}, snakemake submitted {sorted(rules)}")
bad = [row for row in rows if row[1] != "COMPLETED"]
if bad:
    sys.exit(f"ci: jobs not COMPLETED: {bad}")
lesion = [row for row in rows if "lesion" in rules[row[0]]]
others = [row for row in rows if "lesion" not in rules[row[0]]]
if not lesion:
    sys.exit("ci: no SLURM job ran rule lesion")
if not all("gres/gpu" in row[2] + row[3] for row in lesion):
    sys.exit(f"ci: a lesion job asked SLURM for no GPU: {lesion}")
if any("gres/gpu" in row[2] + row[3] for row in others):
    sys.exit(f"ci: a GPU went to a job without rule lesion: {others}")
print(f"ci: {len(rows)} SLURM jobs, all COMPLETED: " + ", ".join(sorted(set(rules.values()))))
print(f"ci: {len(lesion)} job(s) with rule lesion, each holding gres/gpu")
PY

# the packed lesion job's scans (one srun step each) went to one warm worker, the job's own
"$PYTHON" - "$WORK/slurm/results/logs/lesion" <<'PY'
import re
import sys
from pathlib import Path

logs = sorted(Path(sys.argv[1]).rglob("*.log"))
served = [p for p in logs if "worker: lesion segmentation took" in p.read_text()]
pids = {m for p in logs for m in re.findall(r"worker: lesion worker pid (\d+)", p.read_text())}
if not logs or len(served) != len(logs) or len(pids) != 1:
    sys.exit(f"ci: {len(served)} of {len(logs)} lesion jobs served by a worker, pids {pids}")
print(f"ci: the {len(logs)} lesion jobs of the packed SLURM job were served by one worker")
PY

echo "== local run of the same cohort"
t0=$(date +%s)
timeout -k 30 "$RUN_TIMEOUT" "$SNAKEMAKE" --cores "$(nproc)" \
  --configfile "$WORK/local/config.yaml" >"$WORK/local.log" 2>&1 \
  || { tail -50 "$WORK/local.log"; echo "ci: the local run failed"; exit 1; }
local_s=$(( $(date +%s) - t0 ))

"$PYTHON" - "$WORK/slurm/results/tables/scans.tsv" "$WORK/local/results/tables/scans.tsv" <<'PY'
import sys

import pandas as pd

slurm, local = (pd.read_csv(p, sep="\t", dtype={"scan_id": str}) for p in sys.argv[1:3])
if len(slurm) == 0:
    sys.exit("ci: the SLURM run's scans.tsv is empty")
pd.testing.assert_frame_equal(slurm, local, check_exact=False, rtol=1e-9, atol=1e-12)
print(f"ci: scans.tsv of the SLURM run equals the local run ({len(slurm)} scans)")
PY
n_jobs=$(wc -l <"$WORK/sacct.tsv")
echo "ci: slurm check passed: $n_jobs SLURM jobs, SLURM run ${slurm_s} s, local run ${local_s} s," \
  "total $(( $(date +%s) - start )) s"

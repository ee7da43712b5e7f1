#!/usr/bin/env bash
# A benchmark split with --shard i/N under a real SLURM scheduler, on this one machine (issue 26, item 7).
#
# Starts a single-node SLURM (munged, slurmctld, slurmd) with its own slurm.conf in a scratch folder (nothing
# under /etc/slurm is written), submits a tiny benchmark as a 2-task `sbatch --array`, each task running
# `benchmarks/run.py --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` into one run folder, waits for both,
# merges them with `synthaug report`, and stops the daemons it started.
#
#   sudo apt-get install slurm-wlm            # Debian 12: SLURM 22.05 and munge
#   SYNTHAUG_DATA=path/to/data benchmarks/slurm_demo.sh [LOG]
#
# Needs root (or password-less sudo) for munged and slurmd. PYTHON (default .venv/bin/python) must import
# synthaug; SLURM_DEMO_DIR (default /tmp/synthaug-slurm) holds the scheduler's state and logs; the run folder
# is runs/slurm-demo. LOG (default docs/slurm-demo.log) gets a copy of everything printed, with the
# repository's and the scratch folder's absolute paths written as "." and "$SLURM_DEMO_DIR".
# Takes about 2-4 minutes on 2 CPU cores (two tiny shards side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
WORK=${SLURM_DEMO_DIR:-/tmp/synthaug-slurm}
OUT=runs/slurm-demo
LOG=${1:-docs/slurm-demo.log}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

for tool in munged slurmctld slurmd sbatch squeue sinfo scontrol; do
    command -v "$tool" >/dev/null || { echo "slurm_demo: $tool is missing: sudo apt-get install slurm-wlm" >&2; exit 1; }
done
[ -n "${SYNTHAUG_DATA:-}" ] || { echo "slurm_demo: set SYNTHAUG_DATA to the folder holding malaria-nih/" >&2; exit 1; }
"$PYTHON" -c "import synthaug" || { echo "slurm_demo: $PYTHON cannot import synthaug; set PYTHON" >&2; exit 1; }

rm -rf "$WORK" "$OUT"
mkdir -p "$WORK/state" "$WORK/spool" "$WORK/jobs"
exec > >(tee >(sed -e "s#$REPO#.#g" -e "s#$WORK#\$SLURM_DEMO_DIR#g" > "$LOG")) 2>&1
echo "== slurm_demo: $(date -u +%FT%TZ), $(nproc) CPUs"

# ---------------------------------------------------------------- munge (authentication between the daemons)
started_munge=0
if ! pgrep -x munged >/dev/null; then
    [ -s /etc/munge/munge.key ] || as_root mungekey --create
    as_root install -d -o munge -g munge -m 0755 /run/munge
    as_root runuser -u munge -- munged
    started_munge=1
fi

# ---------------------------------------------------------------- a one-node cluster
node=$(hostname -s)
export SLURM_CONF=$WORK/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=synthaug-demo
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
NodeName=$node CPUs=$(nproc) State=UNKNOWN
PartitionName=demo Nodes=$node Default=YES MaxTime=60 State=UP
EOF
stop() {
    scontrol shutdown >/dev/null 2>&1 || true
    # the munged this script started, by the pid it wrote
    if [ "$started_munge" = 1 ] && [ -s /run/munge/munged.pid ]; then as_root kill "$(cat /run/munge/munged.pid)" || true; fi
}
trap stop EXIT
echo "== $(sbatch --version): slurmctld and slurmd with $SLURM_CONF"
as_root slurmctld -f "$SLURM_CONF"
as_root slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    state=$(sinfo -h -n "$node" -o %t 2>/dev/null || true)
    case "$state" in idle*|mix*|alloc*) break ;; esac
    sleep 1
done
echo "== cluster up: node $node is ${state:-not answering}"
sinfo

# ---------------------------------------------------------------- a tiny benchmark as a 2-task array
cat > "$WORK/jobs/shard.sh" <<EOF
#!/bin/bash
#SBATCH --job-name=synthaug-shard
#SBATCH --array=0-1
#SBATCH --cpus-per-task=1
#SBATCH --output=$WORK/jobs/shard-%a.out
export OMP_NUM_THREADS=1
cd $REPO
echo "task \$SLURM_ARRAY_TASK_ID of \$SLURM_ARRAY_TASK_COUNT on \$(hostname -s)"
exec $PYTHON benchmarks/run.py --config configs/bench/malaria-quick.yaml \\
    --set seeds=[0,1] --set fractions=[0.03] --set datasets.0.image_size=16 \\
    --set classifier.model=test_resnet --set classifier.steps=20 --set classifier.batch_size=16 \\
    --set classifier.eval_every=10 --set synthetic.pool_size=64 \\
    --set "generators=[{name: cvae-tiny, options: {}, train: {steps: 20, batch_size: 16}}]" \\
    --set quality.enabled=false \\
    --shard \$SLURM_ARRAY_TASK_ID/\$SLURM_ARRAY_TASK_COUNT --out $OUT
EOF
started=$(date +%s)
echo "== sbatch --wait $WORK/jobs/shard.sh"
(sleep 10; echo "== squeue 10 s after submission"; squeue) &
sbatch --wait "$WORK/jobs/shard.sh" || { echo "== a task failed"; tail -n 30 "$WORK"/jobs/shard-*.out; exit 1; }
echo "== both tasks finished in $(( $(date +%s) - started )) s"
for f in "$WORK"/jobs/shard-*.out; do
    echo "---- $(basename "$f"): its first line, and where it wrote (the shard's summary.md is left out)"
    tr '\r' '\n' < "$f" | grep -E '^task |^run folder|[Ee]rror' || true
done

# ---------------------------------------------------------------- merge the shards
echo "== synthaug report $OUT"
ls "$OUT"
"$PYTHON" -m synthaug.cli report "$OUT"
grep -A 6 '^## Verdicts' "$OUT/report.md"
echo "== done in $(( $(date +%s) - started )) s after submission"

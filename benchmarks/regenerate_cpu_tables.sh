#!/usr/bin/env bash
# Regenerate every synthetic-benchmark results table on a CPU (issues 12 and 16), in order of importance;
# each step writes its tables as soon as it finishes, and every run is cached under runs/ablations, so an
# interrupted regeneration resumes where it stopped. The wall time of each step goes to the log:
#
#     bash benchmarks/regenerate_cpu_tables.sh 2>&1 | tee runs/regenerate.log
#
# Steps (all "synthetic, proxy-RGB" at configs/ablation_cpu.yaml; How2Sign-mini last, real video):
#   every ablation study but hand-init (headline studies streams, alignment, fusion with 5 seeds first);
#   synthetic.md (3 seeds, the same runs); the claims table; baselines; masked hand-pose pretraining +
#   the hand-init study; How2Sign-mini; the claims table again.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
JOBS=${JOBS:-2}
status=0

step() {   # step <name> <command...>: run, time, keep going on failure (reported at the end)
    local name=$1; shift
    local t0=$SECONDS
    echo "=== [$(date -u +%H:%M:%S)] $name: $*"
    if "$@"; then
        echo "=== $name done in $((SECONDS - t0)) s"
    else
        echo "=== $name FAILED (rc $?) after $((SECONDS - t0)) s"
        status=1
    fi
}

# one pool of JOBS one-thread runs over every study but hand-init, in this order (the default model is shared);
# the tables are written when all have finished ("ablate --study <name>" rewrites one from the cache at any time)
STUDIES=streams,alignment,fusion,alpha,beta,cgaf-layers,keypoints,batch-size,batch-size-steps
step "ablate $STUDIES" "$PY" -m seds.experiments.ablate --study "$STUDIES" --jobs "$JOBS"
step synthetic "$PY" benchmarks/bench_synthetic.py --jobs "$JOBS"
step claims "$PY" -m seds.experiments.claims
step baselines "$PY" -m seds.experiments.baselines --name all --seeds 3 --config configs/ablation_cpu.yaml
if [ ! -f runs/hands-ablation/hand_stgcn.safetensors ]; then
    step "hand pretraining: real poses" "$PY" -m seds.experiments.pretrain_hands extract \
        --videos ../shared/data/how2sign-mini --out runs/pose-h2s-mini --fps 8
    step "hand pretraining" "$PY" -m seds.experiments.pretrain_hands train --real runs/pose-h2s-mini \
        --store runs/ablation-store-t24 --preset ablation --out runs/hands-ablation --steps 3000
fi
step "ablate hand-init" "$PY" -m seds.experiments.ablate --study hand-init --jobs "$JOBS"
step how2sign-mini "$PY" benchmarks/bench_how2sign_mini.py
step claims "$PY" -m seds.experiments.claims
echo "=== all steps finished in $SECONDS s (status $status)"
exit $status

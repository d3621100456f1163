#!/usr/bin/env bash
# `make gpu-check` (issue 23): everything a CUDA machine can tell bnlab, in one short run.
#   (a) the tests marked `gpu` (CUDA vs CPU: first step in fp32, determinism, probes, resume across devices)
#   (b) a short paired run with every probe on, on the GPU
#   (c) bnlab-bench on the GPU: paired trainer vs the standard loop, MFU against measured bf16/fp32
#       matmul peaks, the 8-job sweep sequential vs concurrent on one GPU
#   (d) all of it, with the machine described, into results/bench/gpu.txt (commit that file)
# On a machine without CUDA it says so in one line and exits 0 without installing or running anything.
# Budget: under 8 minutes on one H200 from a fresh clone (install included); each stage is timed.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-results/bench/gpu.txt}
export BNLAB_DATA_DIR=${BNLAB_DATA_DIR:-$(pwd)/../shared/data/cifar10-mini}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no CUDA device on this machine (nvidia-smi finds none); nothing run"
  exit 0
fi

mkdir -p "$(dirname "$OUT")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log() { echo "$*" | tee -a "$tmp/report"; }
stage() {  # stage NAME CMD...: run, time, keep its output in the report; a failing stage does not stop the others
  local name=$1; shift; local t0=$SECONDS
  log ""; log "## $name"; log "\$ $*"
  "$@" >"$tmp/out" 2>&1; local rc=$?
  tail -n 60 "$tmp/out" | tee -a "$tmp/report"
  log "-- $name: exit $rc, $((SECONDS - t0)) s"
  [[ $rc -eq 0 ]] || failed+=("$name")
}
failed=()

log "# bnlab gpu-check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
log "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1); $(nproc) CPU cores; $(awk '/MemTotal/ {printf "%.0f GiB", $2/2^20}' /proc/meminfo) RAM"
log "data: $BNLAB_DATA_DIR"

stage "install" make install
log "torch: $("$BIN/python" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))')"

stage "(a) gpu tests" "$BIN/pytest" -q -m gpu -rs tests/test_gpu.py
stage "(b) paired run, every probe on" "$BIN/bnlab" experiment=demo device=cuda logger=none train.progress=off \
  train.steps=300 metrics.landscape.every=50 metrics.ics.every=50 metrics.divergence.every=100 \
  metrics.curvature.every=150 metrics.curvature.slq_runs=1 metrics.activations.every=50 \
  "hydra.run.dir=$tmp/run"
if [[ -f "$tmp/run/summary.json" ]]; then
  log "$("$BIN/python" -c "import json,sys; s=json.load(open('$tmp/run/summary.json')); print({k: s[k] for k in ('device', 'steps', 'wall_time_s') if k in s}); [print(a, {k: v[k] for k in ('final_test_acc', 'diverged', 'train_time_s', 'probe_time_s') if k in v}) for a, v in s['arms'].items()]")"
fi
stage "(c) bench" "$BIN/bnlab-bench" --device cuda --models vgg11,resnet20 --rounds 2 \
  --sweep-jobs 8 --sweep-n-jobs 8 --out "$tmp/bench.txt"
[[ -f "$tmp/bench.txt" ]] && { log ""; log "## bench output"; cat "$tmp/bench.txt" >>"$tmp/report"; }

log ""
log "failed stages: ${failed[*]:-none}"
cp "$tmp/report" "$OUT"
echo "gpu-check: report in $OUT${failed:+ (failed: ${failed[*]})}"
[[ ${#failed[@]} -eq 0 ]]

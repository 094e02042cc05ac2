#!/usr/bin/env bash
# Issue 16's GPU figures in one prepared run of at most ~8 minutes (the device budget is 15 minutes
# in all, machine start included). Every step is its own process under its own timeout and writes
# its JSON under $OUT as it goes, so a step cut short loses only itself.
#
# Prepare here (once; both are git-ignored and travel with `carry`):
#   pip install --target out/gpu_deps --no-deps ml_collections dm-pix clu
#   mkdir -p out/data && cp -r ../shared/data/benchmarks/Set5 out/data/ \
#     && mkdir -p out/data/photos && ls ../shared/data/train/bsd68/* | head -8 | xargs -I{} cp {} out/data/photos/
# Rehearse on the CPU (tiny sizes, TensorFlow unimportable as on the device):
#   SIZE=tiny OUT=/tmp/gpu_rehearsal bash scripts/gpu_figures.sh
# On the device (the `run` tool; H100/H200 dense bf16 peak 989 TFLOPS):
#   run(carry=["out/gpu_deps", "out/data"], timeout_s=540, command="bash scripts/gpu_figures.sh")
# then copy $OUT's JSON files into docs/runs/ and the tables into docs/performance.md.
set -u
OUT=${OUT:-/tmp/gpu_out}
SIZE=${SIZE:-full}
mkdir -p "$OUT"
export PYTHONPATH=out/gpu_deps:. PYTHONUNBUFFERED=1
if [ "$SIZE" = tiny ]; then
  TRAIN="--batch=2 --patch=16 --steps=2 --warmup=1 --torch_modes=eager"
  T1=300; T2=200; T3=200; T4=200
else
  TRAIN="--batch=16 --patch=48 --steps=100 --warmup=5"
  T1=240; T2=120; T3=60; T4=45
fi
step() {  # step NAME TIMEOUT COMMAND...: run, log, keep going whatever happens
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - t0)) s (limit $limit)" | tee -a "$OUT/steps.txt"
  tail -6 "$OUT/$name.log"
}
(nvidia-smi -L; python3 -c "import jax; print(jax.__version__, jax.devices())") > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
# 1. The two models of the figure: bf16 train step, jsr against torch eager and torch.compile.
step bench_bf16_edsr2_rcan4 $T1 python3 scripts/bench_train.py --models=edsr_baseline_x2,rcan_x4 \
  $TRAIN --dtype=bfloat16 --mode=train --data= --peak_tflops=989 --output="$OUT/bench_gpu_bf16.json"
# 2. The other two: EDSR-baseline x4 (MFU >= 45% asked) and the selfsup network.
step bench_bf16_edsr4_selfsup $T2 python3 scripts/bench_train.py \
  --models=edsr_baseline_x4,selfsup_x2 $TRAIN --dtype=bfloat16 --mode=train --data= \
  --peak_tflops=989 --output="$OUT/bench_gpu_bf16_more.json"
# 3. The first Set5 evaluation (compiles included), without and with the precompile.
step eval_timing $T3 python3 scripts/eval_timing.py --data=out/data/Set5 --scale=2 \
  --model=edsr:baseline --output="$OUT/eval_timing_gpu.json"
# 4. Real-ESRGAN degradation throughput on the GPU (issue 14: >= 10x the CPU peer).
step bench_degrade $T4 python3 scripts/bench_degrade.py --only=jsr --data=out/data/photos \
  --reps=5 --output="$OUT/bench_degrade_gpu.json"
echo "done in $SECONDS s" | tee -a "$OUT/steps.txt"

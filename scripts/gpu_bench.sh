#!/usr/bin/env bash
# The GPU benchmark of docs/performance.md ("GPU benchmark"): the six models at batch 18 and 64, bf16, 224x224,
# jaxseg's decoder in smp's shape, beside segmentation_models_pytorch and a Keras 3 U-Net.
#
#   scripts/gpu_bench.sh [more jaxseg.bench flags; they override these, e.g. --backbone vgg19]
#
# Installs nothing. A peer runs where it imports; a folder .peers/ of unpacked wheels, where
# present, goes on PYTHONPATH (docs/performance.md says how to make it). Writes the JSON, the
# log and nvidia-smi's view of the card under $OUT (default /tmp/jaxseg-bench), then a
# short table.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
out="${OUT:-/tmp/jaxseg-bench}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
json="$out/bench-gpu-$stamp.json"
mkdir -p "$out"
if [[ -d .peers ]]; then
  export PYTHONPATH="$PWD/.peers${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
  > "$out/gpu-$stamp.csv" 2>&1 || true

"$python" -m jaxseg.bench --backbone all --batch-size 18,64 --precision bf16 --image-size 224 \
  --decoder smp --peer smp,keras --steps 20 --repeats 5 --warmup 3 --json "$json" "$@" \
  2>&1 | tee "$out/bench-gpu-$stamp.log"

"$python" - "$json" <<'PY'
import json, sys

result = json.load(open(sys.argv[1]))
env, peers = result["environment"], list(result["environment"]["peers"])
print(f"\n{env['device_kind']}: jax {env['jax']}, flax {env['flax']}, "
      f"bf16 matmul {result['matmul_peak']['tflops']:.3g} TFLOP/s; images/s, train / infer")
head = f"{'model':15s}{'batch':>6s}{'prec':>6s}{'jaxseg':>16s}{'% peak':>9s}"
print(head + "".join(f"{name:>16s}{'x ' + name:>14s}" for name in peers))
pair = lambda a, b, f: "-" if a is None else f"{a:{f}} / {b:{f}}"
for row in result["rows"]:
  ours, share = row["jaxseg"], row["jaxseg"]["train_peak_share"]
  line = (f"{row['backbone']:15s}{row['batch_size']:6d}{row['precision']:>6s}"
          f"{pair(ours['train_images_per_s'], ours['infer_images_per_s'], '.0f'):>16s}"
          f"{'-' if share is None else format(share, '.1%'):>9s}")
  for name in peers:
    peer, ratio = row["peers"].get(name, {}), row["ratio"].get(name, {})
    line += f"{pair(peer.get('train_images_per_s'), peer.get('infer_images_per_s'), '.0f'):>16s}"
    line += f"{pair(ratio.get('train'), ratio.get('infer'), '.2f'):>14s}"
  print(line)
PY

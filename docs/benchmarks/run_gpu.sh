#!/usr/bin/env bash
# The GPU latency run, for a CUDA machine whose python3 has torch and CUDA installed (no package
# index needed; tried with python3 3.12 and torch 2.11); docs/benchmarks/README.md has the steps.
# It needs no rclpy. Everything lands in $OUT: <model>/latency.json for each model, env.txt, run.log.
# build/gpu_bundle (docs/benchmarks/prepare_gpu_bundle.sh) must travel with it (carry) for the
# LeRobot models; without it only the built-in ones run.
#
# Settings (environment): CHUNKS measured chunks per mode (200); MODELS, in the order run
# (builtin-pi0 lerobot-smolvla smolvla-folder builtin-pi0-eager: smolvla-folder is a SmolVLA
# folder in LeRobot's saved format, written by rtc_ros.policies.make_checkpoint and loaded
# through the policy registry with its preprocessor, as rtc_node loads one; builtin-pi0-eager is
# the built-in model without CUDA graphs); DEVICE (cuda); BENCH_ARGS added to every run (e.g.
# "--size tiny" for a rehearsal on a CPU, which also makes the folder tiny); DEADLINE in seconds
# after which no new model starts.
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
out=${OUT:-$PWD/gpu_out}
chunks=${CHUNKS:-200}
device=${DEVICE:-cuda}
models=${MODELS:-builtin-pi0 lerobot-smolvla smolvla-folder builtin-pi0-eager}
deadline=${DEADLINE:-400}
folder_size=full
case " ${BENCH_ARGS:-} " in *" --size tiny "*) folder_size=tiny ;; esac
bundle=build/gpu_bundle
mkdir -p "$out"
exec > >(tee "$out/run.log") 2>&1
started=$(date +%s)
elapsed() { echo "[$(( $(date +%s) - started )) s] $*"; }

# The documented command is `.venv/bin/python -m rtc_ros.bench.latency`. The machine's python3 may
# itself be a venv, whose packages a venv made from it would not see: a wrapper.
if [ ! -x .venv/bin/python ]; then
  mkdir -p .venv/bin
  printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > .venv/bin/python
  chmod +x .venv/bin/python
fi
{ nvidia-smi; python3 --version; python3 -m pip list 2>/dev/null \
    | grep -iE '^(torch|transformers|tokenizers|huggingface.hub|numpy|triton) '; } > "$out/env.txt" 2>&1
if [ "$device" = cuda ]; then
  elapsed "GPU tests: CUDA-graph replay against guided_sample in bf16"
  timeout 120 .venv/bin/python -m pytest -q -p no:cacheprovider test/test_action_expert.py -k cuda_graph
fi

install() { python3 -m pip install -q --no-index --no-deps --no-compile --target "$1" "${@:2}"; }
site() {  # site KIND: the PYTHONPATH for one model, installing the bundle's part on first use
  case $1 in
    builtin) echo "" ;;
    smolvla)
      [ -d "$bundle/common" ] || { echo ""; return; }  # no bundle: the venv's own lerobot (setup.sh)
      [ -d /tmp/site_common ] || install /tmp/site_common "$bundle"/common/*.whl >&2
      [ -d /tmp/site_smolvla ] || install /tmp/site_smolvla "$bundle"/smolvla/*.whl >&2
      echo "/tmp/site_smolvla:/tmp/site_common:$PWD/$bundle/stubs" ;;
  esac
}
for name in $models; do
  if [ $(( $(date +%s) - started )) -gt "$deadline" ]; then elapsed "skip $name: past DEADLINE"; continue; fi
  args=(--model "$name" --chunks "$chunks"); kind=builtin
  case $name in
    builtin-pi0-eager) args=(--model builtin-pi0 --no-cuda-graph --chunks $(( (chunks + 1) / 2 ))) ;;
    lerobot-smolvla) kind=smolvla ;;
    smolvla-folder) kind=smolvla; args=(--policy /tmp/smolvla_folder --chunks "$chunks") ;;
  esac
  if [ $kind = smolvla ] && [ ! -d "$bundle/common" ] && ! .venv/bin/python -c 'import lerobot' 2> /dev/null; then
    elapsed "skip $name: no $bundle and no lerobot"; continue
  fi
  if [ "$name" = smolvla-folder ]; then
    elapsed "make_checkpoint --kind smolvla --size $folder_size (random weights)"
    PYTHONPATH=$(site $kind) timeout 150 .venv/bin/python -m rtc_ros.policies.make_checkpoint --kind smolvla \
      --size "$folder_size" --output /tmp/smolvla_folder || { elapsed "make_checkpoint FAILED ($?)"; continue; }
  fi
  elapsed "bench $name"
  PYTHONPATH=$(site $kind) timeout 180 .venv/bin/python -m rtc_ros.bench.latency --device "$device" \
    --output "$out/$name" "${args[@]}" ${BENCH_ARGS:-} || elapsed "bench $name FAILED ($?)"
done

elapsed "summary (p50 chunk latency, ratio to vanilla)"
.venv/bin/python - "$out" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/latency.json")):
    modes = json.loads(path.read_text())["modes"]
    cells = "  ".join(f"{name} {m['latency_ms']['p50']:7.2f} ms x{m['ratio_p50_to_vanilla']:.3f}"
                      for name, m in modes.items())
    print(f"{path.parent.name:<18} prefix {modes['vanilla']['breakdown_ms']['prefix_p50']:6.2f} ms  {cells}")
PY

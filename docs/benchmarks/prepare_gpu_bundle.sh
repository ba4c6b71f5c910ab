#!/usr/bin/env bash
# Builds build/gpu_bundle/, what docs/benchmarks/run_gpu.sh installs on the GPU machine (which
# reaches no package registry): lerobot 0.4.4 and the pure-Python packages it imports that the
# machine lacks, as Python 3.12 wheels; transformers for SmolVLA (4.57.6); and a stand-in for
# PyAV (40 MB; the benchmark reads no video). build/ is git-ignored and travels with `carry`.
# LeRobot's pi0/pi0.5 need a patched transformers that is on no package registry, so they are
# not part of the bundle (docs/benchmarks/README.md).
#
#   bash docs/benchmarks/prepare_gpu_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bundle=build/gpu_bundle
rm -rf "$bundle"
mkdir -p "$bundle"/{common,smolvla,stubs/av}
download() {
  local into=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$bundle/$into" "$@"
}
# What `import lerobot.policies.{smolvla,pi0,pi05}.modeling_*` needs beyond the machine's image
# (KINDS.md): found by importing them and comparing the distributions loaded with its list.
download common lerobot==0.4.4 draccus==0.10.0 mergedeep==1.3.4 datasets==4.8.5 dill==0.4.1 \
  multiprocess==0.70.19 deepdiff==9.1.0 orderly-set==5.5.0 cachebox==5.2.3 diffusers==0.35.2 \
  pyserial==3.5 huggingface-hub==0.35.3
download smolvla transformers==4.57.6 tokenizers==0.22.1
cat > "$bundle/stubs/av/__init__.py" <<'PY'
"""Stand-in for PyAV: lerobot and torchvision import it for video files, which the latency
benchmark never reads. Every attribute is a class that also serves as an exception."""


class _AnyAttribute(type):
    def __getattr__(cls, name):
        return _Stub


class _Stub(Exception, metaclass=_AnyAttribute):
    def __call__(self, *args, **kwargs):
        return _Stub()


def __getattr__(name):
    return _Stub
PY
du -sh "$bundle"

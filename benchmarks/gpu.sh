#!/usr/bin/env bash
# The GPU run of onnxplain in one command, bounded in time (issue 19). See benchmarks/README.md, "On a GPU".
#
#   benchmarks/gpu.sh prepare [--carry DIR] [--no-download] [--ort]   # here: what the device machine lacks
#   benchmarks/gpu.sh take .cK                                        # there, once per chunk call
#   benchmarks/gpu.sh run [--device cuda|cpu] [--carry DIR] [--out DIR] [--tiny] [--dry-run]
#
# prepare: the zoo models k01/k02 exported to ONNX (+ sidecars), o01 and the faces into DIR/shared; the
#   project's wheel and onnx2torch, captum, lime wheels into DIR/wheels; with --ort the onnxruntime-gpu
#   wheel, split in 55 MB chunks into .c1 .. .c5 (one per device call: 64 MiB travel per call).
# take: copies one chunk into $GPU_ORT_DIR (/tmp/ort); idempotent, so a repeated call does no harm.
# run: install (the chunks joined and checked, every wheel into $GPU_SITE with pip --target), check,
#   `pytest -m gpu`, then `python -m benchmarks.run` per model, each phase under `timeout` and all of
#   them within $GPU_TOTAL_S seconds; results in $OUT/<device>.json, .md, gpu.log, profiles.tar.gz.
#   --device cpu runs the same flow on a CPU machine (the tests only collected), --tiny with tiny
#   settings (seconds, not minutes), --dry-run prints the phases with their time limits and runs nothing.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/benchmarks/gpu.sh
cd "$ROOT" || exit 2
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
CARRY=${GPU_CARRY:-.gpu}
OUT_DIR=${OUT:-gpu-out}
DEVICE=${GPU_DEVICE:-cuda}
ORT_DIR=${GPU_ORT_DIR:-/tmp/ort}
SITE=${GPU_SITE:-/tmp/site}
MODELS=${GPU_MODELS:-o01,k01,k02}
TOTAL_S=${GPU_TOTAL_S:-400}   # all phases together; the device run must end within 7 minutes
TINY=${GPU_TINY:-0}
DRY=0
CHUNK_BYTES=55000000
FACES=skimage_lfw_subset_200x25x25.npy

die() { echo "error: $*" >&2; exit 2; }

# ------------------------------------------------------------------------------------------------ prepare
tree_hash() {  # the project's installed sources: a wheel built from other sources is stale
  find engine exporters cli pyproject.toml -type f \( -name '*.py' -o -name '*.html' -o -name '*.css' \
    -o -name pyproject.toml \) ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16
}

version_of() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

prepare_models() {
  mkdir -p "$CARRY/shared/zoo" "$CARRY/shared/data" || exit 2
  # Keras files are exported here (the device has no TensorFlow), through the harness's own export path.
  "$PY" - "$CARRY/shared" "$MODELS" <<'EOF' || die "exporting the models failed"
import shutil, sys
from pathlib import Path
from benchmarks.run import FACES, SHARED, model_path, zoo_file

dest = Path(sys.argv[1])
for key in sys.argv[2].split(","):
    onnx = model_path(key, None)
    name = zoo_file(key).stem + ".onnx"  # keeps the zoo key and name, so zoo lookups work there
    shutil.copyfile(onnx, dest / "zoo" / name)
    if onnx.with_name(onnx.name + ".json").exists():
        shutil.copyfile(onnx.with_name(onnx.name + ".json"), dest / "zoo" / (name + ".json"))
    print(dest / "zoo" / name)
shutil.copyfile(SHARED / "data" / FACES, dest / "data" / FACES)
EOF
}

prepare_wheels() {  # $1: 1 to download onnx2torch, captum and lime (the versions installed here)
  local dir="$CARRY/wheels"
  mkdir -p "$dir" && rm -f "$dir"/onnxplain-*.whl || exit 2
  "$PY" -m pip wheel -q --no-deps -w "$dir" . || die "building the project's wheel failed"
  tree_hash >"$dir/onnxplain.tree"
  [ "$1" = 1 ] || return 0
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$dir" \
    "onnx2torch==$(version_of onnx2torch)" "captum==$(version_of captum)" || die "pip download failed"
  "$PY" -m pip wheel -q --no-deps -w "$dir" "lime==$(version_of lime)" || die "building the lime wheel failed"
}

prepare_ort() {  # the onnxruntime-gpu wheel of the version tested here, for Python 3.12, in chunks
  local tmp whl name k
  tmp=$(mktemp -d) || exit 2
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 -d "$tmp" "onnxruntime-gpu==$(version_of onnxruntime-gpu)" || die "pip download failed"
  whl=$(ls "$tmp"/onnxruntime_gpu-*.whl) && name=$(basename "$whl") || die "no onnxruntime-gpu wheel in $tmp"
  (cd "$tmp" && sha256sum "$name" >"$name.sha256" && split -b "$CHUNK_BYTES" -a 1 --numeric-suffixes=1 "$name" "$name.part")
  for k in 1 2 3 4 5 6 7 8 9; do
    rm -rf ".c$k"
    [ -f "$tmp/$name.part$k" ] || continue
    [ "$k" -le 5 ] || die "$name needs more than 5 chunks of $CHUNK_BYTES bytes"
    mkdir ".c$k" && mv "$tmp/$name.part$k" ".c$k/" && cp "$tmp/$name.sha256" ".c$k/"
    echo ".c$k/$name.part$k"
  done
  rm -rf "$tmp"
}

# ------------------------------------------------------------------------------------------------ take
take() {
  [ -d "${1:-}" ] || die "take wants a chunk folder such as .c1"
  mkdir -p "$ORT_DIR" && cp "$1"/*.part* "$1"/*.sha256 "$ORT_DIR"/ || die "no chunk in $1"
  ls -l "$ORT_DIR"
}

# ------------------------------------------------------------------------------------------------ run
STARTED=$(date +%s)
FAILED=0

phase() {  # phase NAME BUDGET_S COMMAND...: run under `timeout`, within what is left of TOTAL_S
  local name=$1 budget=$2 left limit start rc status
  shift 2
  left=$((TOTAL_S - ($(date +%s) - STARTED)))
  limit=$((budget < left ? budget : left))
  if [ "$DRY" = 1 ]; then
    printf '%s\t%s\t%s\n' "$name" "$budget" "$*"
    return 0
  fi
  if [ "$limit" -lt 10 ]; then
    status="skipped: out of time"
    start=$(date +%s)
  else
    echo "=== $name (at most ${limit}s): $*"
    start=$(date +%s)
    timeout -k 5 "$limit" "$@"
    rc=$?
    case $rc in
      0) status=ok ;;
      124 | 137) status="timed out after ${limit}s" ;;
      *) status="failed (exit $rc)" ;;
    esac
  fi
  [ "$status" = ok ] || FAILED=1
  echo "=== $name: $status, $(($(date +%s) - start))s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - start))" "$*" >>"$OUT_DIR/phases.tsv"
  [ "$status" = ok ]
}

install_wheels() {  # join the onnxruntime-gpu chunks, check them, install every wheel with pip --target
  local parts whls=() n
  parts=$(ls "$ORT_DIR"/*.whl.part* 2>/dev/null | sort -V)
  if [ -n "$parts" ] && ! ls "$ORT_DIR"/*.whl >/dev/null 2>&1; then
    n=$(basename "$(echo "$parts" | head -1)")
    cat $parts >"$ORT_DIR/${n%.part*}.tmp" && mv "$ORT_DIR/${n%.part*}.tmp" "$ORT_DIR/${n%.part*}" || return 1
    (cd "$ORT_DIR" && sha256sum -c --quiet ./*.sha256) || {
      rm -f "$ORT_DIR/${n%.part*}"
      echo "the joined onnxruntime-gpu wheel is corrupt: take the chunks again" >&2
      return 1
    }
  fi
  if ls "$CARRY"/wheels/onnxplain-*.whl >/dev/null 2>&1 && [ "$(tree_hash)" != "$(cat "$CARRY/wheels/onnxplain.tree")" ]; then
    echo "$CARRY/wheels holds a wheel of other sources than this tree: rerun benchmarks/gpu.sh prepare" >&2
    return 1
  fi
  for w in "$CARRY"/wheels/*.whl "$ORT_DIR"/*.whl; do [ -f "$w" ] && whls+=("$w"); done
  [ ${#whls[@]} -gt 0 ] || { echo "nothing to install (no wheels in $CARRY/wheels or $ORT_DIR)"; return 0; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${whls[@]}"
}

# Versions and TF32 settings into the log; on cuda, fail fast when torch or onnxruntime lacks CUDA.
CHECK='
import sys, onnxruntime as ort, torch, onnx2torch, captum, lime, onnxplain.engine as e
print("python", sys.version.split()[0], "| onnxruntime", ort.__version__, ort.__file__, ort.get_available_providers())
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-",
      "| cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
print("onnxplain", e.__file__, "| captum", captum.__version__)
if sys.argv[1] == "cuda":
    assert torch.cuda.is_available(), "torch sees no CUDA device"
    assert "CUDAExecutionProvider" in ort.get_available_providers(), "onnxruntime has no CUDA provider"
'

clean_out() {  # removes only what run writes in $OUT (it may be any folder); `keep`: the results stay
  local m
  for m in ${MODELS//,/ }; do rm -rf "${OUT_DIR:?}/$m" "${OUT_DIR:?}/$m-lime"; done
  rm -f "$OUT_DIR/phases.tsv"
  [ "${1:-}" = keep ] || rm -f "$OUT_DIR"/{gpu.log,profiles.tar.gz,"$DEVICE".json,"$DEVICE".md}
}

run() {
  local images=1,16 repeats=5 warmup=1 budget=3 methods=saliency,smoothgrad,ig,gradcam,occlusion
  local lime=() extra=(--profile-missed) tests=(-m gpu tests/engine/test_cuda.py -p no:cacheprovider -q)
  local bench_s=50 lime_s=30 m  # 40 + 40 + 80 + 3 x (50 + 30) = 400 s, the whole TOTAL_S
  if [ "$TINY" = 1 ]; then
    images=1 repeats=1 warmup=0 budget=0 methods=saliency,occlusion lime=(--param lime.samples=50)
    extra=(--no-floors --threads 1)
  fi
  # Without CUDA the gpu tests can only fail (by design): collect them, so the selection is checked.
  [ "$DEVICE" = cuda ] || tests+=(--collect-only)
  if [ "$DRY" = 0 ]; then
    mkdir -p "$OUT_DIR" && clean_out || exit 2
    exec > >(tee "$OUT_DIR/gpu.log") 2>&1
    nvidia-smi -L 2>/dev/null
  fi
  SHARED_ABS=$(cd "$CARRY/shared" 2>/dev/null && pwd) || [ "$DRY" = 1 ] || die "no $CARRY/shared: run benchmarks/gpu.sh prepare first"
  export ONNXPLAIN_SHARED=$SHARED_ABS PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  export GPU_CARRY=$CARRY GPU_ORT_DIR=$ORT_DIR GPU_SITE=$SITE GPU_DEVICE=$DEVICE PYTHON=$PY
  # Without the wheels or without CUDA nothing after would mean anything: straight to the results.
  if { phase install 40 "$SELF" install && phase check 40 "$SELF" check; } || [ "$DRY" = 1 ]; then
    phase tests 80 "$PY" -m pytest "${tests[@]}"
    for m in ${MODELS//,/ }; do
      phase "$m" $bench_s "$PY" -m benchmarks.run --models "$m" --device "$DEVICE" --methods "$methods" \
        --images "$images" --repeats "$repeats" --warmup "$warmup" --budget "$budget" --out "$OUT_DIR/$m" "${extra[@]}"
      phase "$m-lime" $lime_s "$PY" -m benchmarks.run --models "$m" --device "$DEVICE" --methods lime --images 1 \
        --repeats "$repeats" --warmup "$warmup" --budget "$budget" --out "$OUT_DIR/$m-lime" "${lime[@]}" "${extra[@]}"
    done
  fi
  [ "$DRY" = 0 ] || return 0
  "$PY" -m benchmarks.gpu_results "$OUT_DIR" "$DEVICE" || FAILED=1
  if ls -d "$OUT_DIR"/*/profiles >/dev/null 2>&1; then
    (cd "$OUT_DIR" && tar czf profiles.tar.gz ./*/profiles)
  fi
  (clean_out keep)
  echo "=== $((($(date +%s) - STARTED)))s in all; results: $(ls "$OUT_DIR" | tr '\n' ' ')"
  return $FAILED
}

cmd=${1:-}
[ -n "$cmd" ] && shift
case $cmd in -h | --help) sed -n "2,17p" "$SELF"; exit 0 ;; esac
DOWNLOAD=1 ORT=0
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=${2:?}; shift ;;
    --carry) CARRY=${2:?}; shift ;;
    --out) OUT_DIR=${2:?}; shift ;;
    --tiny) TINY=1 ;;
    --dry-run) DRY=1 ;;
    --no-download) DOWNLOAD=0 ;;
    --ort) ORT=1 ;;
    -h | --help) sed -n "2,17p" "$SELF"; exit 0 ;;
    *) [ "$cmd" = take ] && [ -z "${CHUNK:-}" ] && CHUNK=$1 || die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
case $DEVICE in cuda | cpu) ;; *) die "--device must be cuda or cpu, got $DEVICE" ;; esac
case $cmd in
  prepare) prepare_models && prepare_wheels "$DOWNLOAD" && { [ "$ORT" = 0 ] || prepare_ort; } ;;
  take) take "${CHUNK:-}" ;;
  run) run ;;
  install) install_wheels ;;  # run's first phases, on their own
  check) "$PY" -c "$CHECK" "$DEVICE" ;;
  *) die "give a command: prepare, take, run, install or check (see --help)" ;;
esac

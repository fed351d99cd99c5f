#!/usr/bin/env bash
# The GPU suite: everything murmur measures on CUDA, in one run of under 9 minutes, offline.
#
#   benchmarks/gpu_suite.sh OUT_DIR [--dry-run] [--only STAGES] [--python PY]
#
# Runs from a copy of the repository on a CUDA machine with no internet. Stages, each under its own
# time limit so one slow stage cannot eat the others' time (seconds, override with the env var named):
#   pytest  the tests marked gpu                                               (GPU_SUITE_PYTEST_S=90)
#   train   training tok/s and MFU, 124m and 1b presets, bf16, eager and
#           compiled, murmur vs transformers in the same run                    (GPU_SUITE_TRAIN_S=250)
#   fsdp    FSDP2 on one GPU over NCCL vs one plain process, 124m and 1b        (GPU_SUITE_FSDP_S=60)
#   serve   murmur's engine vs transformers generate at 1, 8 and 32 concurrent
#           requests (124m preset, bf16)                                        (GPU_SUITE_SERVE_S=120)
# Each stage prints as it goes and leaves OUT_DIR/<stage>.log; OUT_DIR/summary.txt lists every
# stage's status, and OUT_DIR/env.txt the machine. Nothing is written outside OUT_DIR.
#
# Packages beyond what a CUDA machine usually has (Python, torch, transformers, tokenizers,
# safetensors, pyarrow, numpy) travel as wheels in gpu-wheels/ (`make gpu-wheels`, see
# docs/benchmarks.md): they are installed with --no-deps --no-index into OUT_DIR/site, never into
# the machine's own Python.
#
# --dry-run prints what would run (and works without CUDA); --only takes a comma list of stages.
set -uo pipefail

usage() { echo "usage: benchmarks/gpu_suite.sh OUT_DIR [--dry-run] [--only pytest,train,fsdp,serve] [--python PY]" >&2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="" DRY=0 ONLY="pytest,train,fsdp,serve" PY="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --only) [ $# -ge 2 ] || { echo "gpu_suite: --only needs a list of stages" >&2; usage; exit 2; }
                ONLY="$2"; shift ;;
        --python) [ $# -ge 2 ] || { echo "gpu_suite: --python needs an interpreter" >&2; usage; exit 2; }
                  PY="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu_suite: unknown option $1" >&2; usage; exit 2 ;;
        *) [ -z "$OUT" ] || { echo "gpu_suite: one output folder only (got $OUT and $1)" >&2; usage; exit 2; }
           OUT="$1" ;;
    esac
    shift
done
[ -n "$OUT" ] || { echo "gpu_suite: give the output folder" >&2; usage; exit 2; }
for s in ${ONLY//,/ }; do
    case "$s" in pytest|train|fsdp|serve) ;; *) echo "gpu_suite: unknown stage '$s' (pytest, train, fsdp, serve)" >&2; exit 2 ;; esac
done
[ -e "$OUT" ] && [ ! -d "$OUT" ] && { echo "gpu_suite: $OUT is a file; give a folder" >&2; exit 2; }
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }

# The stages: name, time limit, command (run from the repository root).
GPU_TESTS="$(cd "$REPO" && grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')"
declare -a NAMES LIMITS CMDS
add() { NAMES+=("$1"); LIMITS+=("$2"); CMDS+=("$3"); }
add pytest "${GPU_SUITE_PYTEST_S:-90}" "$PY -m pytest -m gpu -q -p no:cacheprovider -o addopts= $GPU_TESTS"
add train "${GPU_SUITE_TRAIN_S:-250}" "$PY -u benchmarks/train_throughput.py --presets 124m,1b --dtype bf16 --compile --steps 10 --repeats 2"
add fsdp "${GPU_SUITE_FSDP_S:-60}" "$PY -u benchmarks/train_scaling.py --one-device --no-processes --no-compile --presets 124m:16:1024,1b:4:2048 --json \$OUT/fsdp.json"
add serve "${GPU_SUITE_SERVE_S:-120}" "$PY -u benchmarks/serve_throughput.py --device cuda --preset 124m --dtype bf16 --no-http --repeats 1 --rounds 1 --concurrency 1 8 32"

WHEELS="$REPO/gpu-wheels"
if [ "$DRY" = 1 ]; then
    echo "gpu_suite (dry run): output in $OUT"
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "install: $PY -m pip install --no-deps --no-index --target $OUT/site $WHEELS/*.whl"
    else
        echo "install: nothing (no gpu-wheels/; run make gpu-wheels to carry typer, rich, zstandard, pytest...)"
    fi
    for i in "${!NAMES[@]}"; do
        wanted "${NAMES[$i]}" && echo "${NAMES[$i]} (limit ${LIMITS[$i]}s): ${CMDS[$i]//\$OUT/$OUT}"
    done
    exit 0
fi

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
    || { echo "gpu_suite: no CUDA device visible to $PY (torch.cuda.is_available() is False); try --dry-run" >&2; exit 2; }
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
cd "$REPO" || exit 2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "== install: $(ls "$WHEELS"/*.whl | wc -l) wheels from gpu-wheels/ into $OUT/site"
    "$PY" -m pip install -q --no-deps --no-index --target "$OUT/site" "$WHEELS"/*.whl > "$OUT/install.log" 2>&1 \
        || { echo "gpu_suite: installing gpu-wheels/ failed (see $OUT/install.log)" >&2; tail -5 "$OUT/install.log" >&2; }
    export PYTHONPATH="$OUT/site:$PYTHONPATH"
fi
{
    date -u +"%Y-%m-%d %H:%M:%S UTC"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
    "$PY" -c "import platform, torch, transformers; print('python', platform.python_version(), '| torch', torch.__version__, '| cuda', torch.version.cuda, '| transformers', transformers.__version__, '|', torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/env.txt"

: > "$OUT/summary.txt"
START=$SECONDS
for i in "${!NAMES[@]}"; do
    name="${NAMES[$i]}" limit="${LIMITS[$i]}" cmd="${CMDS[$i]//\$OUT/$OUT}"
    wanted "$name" || continue
    echo "== $name (limit ${limit}s): $cmd"
    t0=$SECONDS
    timeout --signal=TERM --kill-after=10 "$limit" bash -c "$cmd" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    case $rc in 0) status=ok ;; 124|137) status="timed out after ${limit}s" ;; *) status="failed (exit $rc)" ;; esac
    line="$name: $status in $((SECONDS - t0))s"
    echo "== $line"
    echo "$line" >> "$OUT/summary.txt"
done
echo "total $((SECONDS - START))s" >> "$OUT/summary.txt"
echo "== summary ($OUT/summary.txt)"
cat "$OUT/summary.txt"
! grep -qv -e ": ok in" -e "^total" "$OUT/summary.txt"

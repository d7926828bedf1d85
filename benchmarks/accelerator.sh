#!/usr/bin/env bash
# The whole benchmark suite at the papers' batch sizes, in float32 and bfloat16, with one combined table.
#
#   bash benchmarks/accelerator.sh [--tiny] [OUT_DIR]
#
# Runs, from the repository root, each script of benchmarks/ (train_step, ssl_loss, input_throughput,
# personlab_decode, compile_cache, matting, posewarp, and peers when benchmarks/peers.py exists), in float32
# and bfloat16 where the script has a --dtype option, at the papers' batches (parsing 10, PersonLab 16, matting
# 10, pose-guided synthesis 4; 20 timed steps). One failing script does not stop the others: its exit status is
# in the table, its output in the log.
#   --tiny    the tiny cases with a few steps (a smoke run that also works on CPU; peers: one case per task)
#   OUT_DIR   default: $OUT if set (the device tool's folder), else benchmarks/accelerator_out
# Writes OUT_DIR/results.md (by benchmarks/suite_table.py: the device, each script's exit status and time, one
# table per script), OUT_DIR/results.json (every script's JSON, by run name), OUT_DIR/suite.log (all output) and
# each script's own JSON in OUT_DIR/json/. When OUT_DIR is $OUT, json/ is packed into json.tar.gz (the device
# tool brings back at most 8 files; results.json holds the same rows).
# PYTHON: the interpreter (default .venv/bin/python if there, else python3). The scripts need jhuman's
# dependencies; the device machine's image lacked tensorflow-cpu, tensorflow-datasets, ml_collections,
# tensorboardX and pycocotools when last listed (.library/device/KINDS.md, 2026-11-17): the suite prints what
# is missing, and the scripts that need it fail and are reported as such.
set -uo pipefail
cd "$(dirname "$0")/.."

TINY=0
OUT_DIR=""
for arg in "$@"; do
  case $arg in
    --tiny) TINY=1 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $arg (usage: bash benchmarks/accelerator.sh [--tiny] [OUT_DIR])" >&2; exit 2 ;;
    *) OUT_DIR=$arg ;;
  esac
done
OUT_DIR=${OUT_DIR:-${OUT:-benchmarks/accelerator_out}}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$OUT_DIR/json"
LOG=$OUT_DIR/suite.log
STATUS=$OUT_DIR/json/_status.tsv
: > "$LOG"
: > "$STATUS"

DEVICE=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
JAX_DEVICES=$("$PYTHON" -c "import jax; d = jax.devices(); print(f'{len(d)} x {d[0].device_kind} (jax {jax.__version__}, {jax.default_backend()})')" 2>/dev/null)
MISSING=$("$PYTHON" -c "
import importlib.util as u
names = ['jax', 'flax', 'optax', 'orbax.checkpoint', 'ml_collections', 'tensorflow', 'tensorflow_datasets', 'cv2',
         'scipy', 'pycocotools', 'tensorboardX']
print(' '.join(n for n in names if u.find_spec(n.split('.')[0]) is None))" 2>/dev/null)
echo "device: ${DEVICE:-no nvidia-smi}; jax: ${JAX_DEVICES:-jax not importable}; missing: ${MISSING:-none}" | tee -a "$LOG"

has_flag() { grep -q -- "\"$2\"" "benchmarks/$1.py"; }

# bench NAME SCRIPT ARGS...: runs benchmarks/SCRIPT.py ARGS with its JSON at $OUT_DIR/json/NAME.json.
bench() {
  local name=$1 script=$2
  shift 2
  local json_flag=--json
  has_flag "$script" --json || json_flag=--output
  echo "== $name: $PYTHON benchmarks/$script.py $*" | tee -a "$LOG"
  local t0=$SECONDS
  "$PYTHON" "benchmarks/$script.py" "$@" "$json_flag" "$OUT_DIR/json/$name.json" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "benchmarks/$script.py $*" >> "$STATUS"
}

DTYPES="float32 bfloat16"
for dtype in $DTYPES; do
  if ((TINY)); then
    bench "train_step_$dtype" train_step --cases tiny --batch 8 --steps 3 --dtype "$dtype"
    bench "matting_$dtype" matting --size tiny --steps 2 --infer 128 --metric_sizes 24x32 --dtype "$dtype"
    bench "posewarp_$dtype" posewarp --size tiny --steps 2 --warp_sizes 64 --dtype "$dtype"
  else
    bench "train_step_$dtype" train_step --cases resnet101,vgg16 --batch 10 --steps 20 --dtype "$dtype"
    bench "ssl_loss_$dtype" ssl_loss --batch 10 --steps 20 --dtype "$dtype"
    bench "matting_$dtype" matting --size full --batch 10 --steps 20 --dtype "$dtype"
    bench "posewarp_$dtype" posewarp --size full --batch 4 --gen_batch 8 --steps 20 --dtype "$dtype"
  fi
done
if ((TINY)); then
  printf 'ssl_loss\tskipped\t0\tno tiny case (DeepLab-v2 ResNet-101 at 321x321 only)\n' >> "$STATUS"
  bench input_throughput input_throughput --tasks parsing_tiny,personlab_tiny,matting_tiny,posewarp_tiny --synthetic_num 40 --warmup 2 \
    --seconds 2 --time_steps 2 --dtype float32,bfloat16
  bench personlab_decode personlab_decode --cases 401 --modes grid --repeats 3 --reference_repeats 0
  bench compile_cache compile_cache --steps 2 --synthetic_num 40 --runs cold,warm
else
  # Pipeline once (it does not depend on the dtype), the step's FLOPs and img/s at the configs' batches per dtype.
  bench input_throughput input_throughput --time_steps 10 --dtype float32,bfloat16
  bench personlab_decode personlab_decode --repeats 20 --reference_repeats 1
  bench compile_cache compile_cache --steps 20
fi
if [ -f benchmarks/peers.py ]; then
  for dtype in $DTYPES; do
    args=(--dtype "$dtype")
    # tiny: one case per task (torch.compile's compilations, not the steps, take the time on CPU)
    if ((TINY)); then
      args+=(--size tiny --steps 2 --cases deeplab_resnet101,personlab_resnet101,mnet_320,posewarp_discriminator_256)
    else
      args+=(--steps 20)
    fi
    bench "peers_$dtype" peers "${args[@]}"
  done
else
  printf 'peers\tskipped\t0\tbenchmarks/peers.py is not in this tree\n' >> "$STATUS"
fi

COMMAND="bash benchmarks/accelerator.sh$( ((TINY)) && echo " --tiny") $OUT_DIR"
"$PYTHON" benchmarks/suite_table.py "$OUT_DIR" --command "$COMMAND" --device "${DEVICE:-}" \
  --jax_devices "${JAX_DEVICES:-}" --missing "${MISSING:-}" 2>&1 | tee -a "$LOG"

FAILED=$(awk -F'\t' '$2 != "0" && $2 != "skipped" { printf "%s ", $1 }' "$STATUS")
if [ -n "${OUT:-}" ] && [ "$OUT_DIR" -ef "$OUT" ]; then
  tar czf "$OUT_DIR/json.tar.gz" -C "$OUT_DIR" json && rm -r "$OUT_DIR/json"
fi
if [ -n "$FAILED" ]; then
  echo "failed: $FAILED(see $LOG)" | tee -a "$LOG"
  exit 1
fi

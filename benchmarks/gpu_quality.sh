#!/usr/bin/env bash
# The quality table's GPU rows (benchmarks/bench_quality.py), from random weights, on one GPU
# machine (16 cores), at the GPU schedule: the probe's native 224 px patches of the 256 px
# faces for EPOCHS on one set and EPOCHS_ALL on all four. The recipes as shipped train 96 px
# patches for 30 epochs (pipeline/config.py RECIPES): the default_ffhq row measures exactly that.
# Needs the project installed (or on PYTHONPATH) and the face sets under $DATA (default
# /tmp/data): $DATA/<set>/{train,val}/{real,fake}/ for ffhq_stylegan, ciplab_photoshop,
# lfw_faceswap, celeb_faceedit and allage_real. With the device tool, `python
# benchmarks/device_pack.py` packs Ray and the five sets into three calls and prints them, this
# script in the last (benchmarks/README.md, "On the GPU machine"). Run from the project's root:
#   BUDGET=420 bash benchmarks/gpu_quality.sh
# Two lanes run side by side on the one GPU: the supervised rows (faces decoded once, patches
# cut by a few loader processes: GPU-bound) on CPUS_SUPERVISED cores (6), and the self-blend
# rows (a blend of every real face each epoch: bound by the CPUs that make them) on CPUS_BLEND
# (10). Each lane runs its rows in order of what they decide; a row starts only while its time
# limit fits in what is left of BUDGET seconds (default 420), so the script ends within about
# BUDGET + 60 s: set it from the session's device time. ROWS="name name ..." runs only those rows
# (a later session's rest). A row cut by its limit leaves its epochs' figures in its log.
# JSON lines, the Markdown table and log tails go into $OUT/ (or ./device-out/). EPOCHS (60) and
# EPOCHS_ALL (20) set the schedules.
set -u
out=${OUT:-device-out}
data=${DATA:-/tmp/data}
epochs=${EPOCHS:-60}
epochs_all=${EPOCHS_ALL:-20}
budget=${BUDGET:-420}
start=$SECONDS
mkdir -p "$out"
# SITE: a folder of packages installed apart from the system's (none: the default is harmless)
export PYTHONPATH=${SITE:-/tmp/site}:$PWD PYTHONUNBUFFERED=1
python3 -c "import torch, ray; print('torch', torch.__version__, torch.cuda.is_available() and \
torch.cuda.get_device_name(), 'ray', ray.__version__)" > "$out/versions.txt" || exit 1
cat "$out/versions.txt"
. benchmarks/run_step.sh
wanted() {  # name, seconds: whether the row is asked for and fits in what is left of BUDGET
  if [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" $1 "* ]]; then return 1; fi
  local left=$((budget - (SECONDS - start)))
  if [ "$left" -lt "$2" ]; then
    echo "$1: not started ($left s of BUDGET left, its limit is $2 s)"
    return 1
  fi
}
# the GPU schedule's patches, which every row sets unless it is called as `patches= row ...`
# (then the recipe's own, as `deepfake train` has them)
patches=224
row() {  # name, seconds, recipe, training sets, settings...: on the lane's $cpus cores
  local name=$1 limit=$2 recipe=$3 sets=$4
  shift 4
  wanted "$name" "$limit" || return 0
  run_step "$name" "$limit" python3 benchmarks/bench_quality.py --data "$data" --recipe "$recipe" \
    --train "$sets" --out /tmp/quality --results "$out/results.jsonl" --cpus "$cpus" \
    --note "$cpus-core $lane lane" ${patches:+--set train_crop=$patches} "$@"
}
first() {  # row or real_row, and its arguments: a lane's first row, which ends the lane when
  "$@"     # it fails (not when its limit cuts it)
  local rc=$?
  [ $rc -eq 0 ] || [ $rc -eq 124 ] || { echo "$lane lane: its first row failed, the lane ends"; return 1; }
}
real_row() {  # name, seconds, settings...: the whole network on the real faces of all sets
  local name=$1 limit=$2
  shift 2
  row "$name" "$limit" npr-full all --real-only --set epochs_full="$epochs_all" "$@"
}
# Limits: the GPU probe trained the truncated network at about 3,200 patches/s and the whole one
# at 1,800 alone; one epoch of ffhq_stylegan is 1,377 faces, of the four labelled sets 8,701,
# of the real faces of all five 5,652 and as many blends (about 470 blends/s on 10 cores).
supervised() {
  lane=supervised cpus=${CPUS_SUPERVISED:-6}
  # the default recipe, then the truncated network on the same input, on one set and on all four
  first row nprfull_ffhq 150 npr-full ffhq_stylegan --set epochs_full="$epochs" || return
  # the default recipe as `deepfake train` runs it (96 px patches, 30 epochs): what a user gets,
  # against the GPU schedule above (the CPU rows favoured the smaller patches at equal epochs)
  patches= row default_ffhq 120 npr-full ffhq_stylegan
  row nprfull_all 240 npr-full all --set epochs_full="$epochs_all"
  row npr_ffhq 120 npr ffhq_stylegan --set epochs_full="$epochs"
  row npr_all 180 npr all --set epochs_full="$epochs_all" --eval-jpeg 90
  row npr_without_ffhq 150 npr ciplab_photoshop,lfw_faceswap,celeb_faceedit \
    --set epochs_full="$epochs_all"  # StyleGAN held out: a generator never seen
  # every set drawn about equally often; its epochs are 1.38x longer, so 5/7 of them see as
  # many faces
  row nprfull_all_balanced 240 npr-full all --set epochs_full="$((epochs_all * 5 / 7))" \
    --set balance_sources=True
  row rgb_layer2_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set arch=resnet50_layer2
  row npr_flip_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set tta=flip
  row npr_standard_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set augment=standard
  row srm_layer2_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" \
    --set arch=resnet50_layer2_srm
  row dwt_layer2_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" \
    --set arch=resnet50_layer2_dwt
  # 0.99: an average over the last ~100 steps (~5 epochs of 22 steps); 0.999's 1,000-step
  # horizon would reach back to the run's first epochs on this set
  row npr_ema_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set ema=0.99
  row npr_cutmix_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set mix=cutmix
  row npr_smooth_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set label_smoothing=0.1
  row npr_droppath_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set drop_path=0.1
}
selfblend() {
  lane=self-blend cpus=${CPUS_BLEND:-10}
  # Real faces only (self-blends, never a fake), then the supervised sets with blends added
  # (the combined row), then each part of the blend a row
  first real_row real_all 300 || return
  row combined_all 300 npr-full all --set epochs_full="$epochs_all" --set self_blend=True
  # self-blends only: no blend pastes another real face (the default pastes one in half of
  # them, Face X-ray's blends of two people: a swap changes the identity, a self-blend does not)
  real_row real_all_selfonly 300 --set blend_donors=0
  # each blend's region drawn from three (forehead to chin, brows to chin, brows to mouth), as
  # SBI and Face X-ray draw theirs, instead of the outline alone
  real_row real_all_hulls 300 --set blend_mask=hulls
  # each blend of two people pastes one of the 100 real faces posed most like the face (Face
  # X-ray's choice), instead of any
  real_row real_all_posed 300 --set blend_donor_pool=100
  real_row real_all_noboundary 300 --set boundary_weight=0
  real_row real_all_ellipse 300 --set blend_mask=ellipse
  # half the faces, real and blended alike, re-encoded as JPEG after blending (SBI's setting)
  real_row real_all_jpeg 300 --set blend_jpeg=0.5
  # each face beside its own blend in the batch, cut and jittered alike (SBI's batches),
  # without and with SBI's re-encoding
  real_row real_all_pairs 300 --set blend_pairs=True
  real_row real_all_sbi 300 --set blend_pairs=True --set blend_jpeg=0.5
}
supervised 2>&1 | sed -u 's/^/supervised | /' &
selfblend 2>&1 | sed -u 's/^/self-blend | /' &
wait
# a committee: the two all-sets models above, their logits averaged (twice the scoring cost)
shopt -s nullglob
models=(/tmp/quality/npr_all_train_crop-224_epochs_full-*/last.pt
  /tmp/quality/npr-full_all_train_crop-224_epochs_full-*/last.pt)
if [ ${#models[@]} -eq 2 ] && wanted average_all 90; then
  run_step average_all 90 python3 benchmarks/bench_average.py --data "$data" "${models[@]}"
fi
python3 benchmarks/bench_quality.py --results "$out/results.jsonl" --table | tee "$out/table.md"
echo "gpu_quality.sh: $((SECONDS - start)) s"

#!/usr/bin/env bash
# The quality table's GPU rows (benchmarks/bench_quality.py), from random weights, at the recipes'
# own settings (native 224 px patches of the 256 px faces), on one GPU machine (16 cores).
# Needs the project installed (or on PYTHONPATH) and the face sets under $DATA (default
# /tmp/data): $DATA/<set>/{train,val}/{real,fake}/ for ffhq_stylegan, ciplab_photoshop,
# lfw_faceswap, celeb_faceedit and allage_real. Run from the project's root:
#   bash benchmarks/gpu_quality.sh
# JSON lines, the Markdown table and log tails go into $OUT/ (or ./device-out/). Rows run in
# order of what they decide: the truncated network against the whole one on the same input,
# on one set and on all four, the real-only and combined rows, then the ablations; a row cut by its time limit leaves its
# epochs' figures in its log. EPOCHS (default 60) and EPOCHS_ALL (default 20) set the
# schedules, CPUS (default 15) each run's cores.
set -u
out=${OUT:-device-out}
data=${DATA:-/tmp/data}
epochs=${EPOCHS:-60}
epochs_all=${EPOCHS_ALL:-20}
mkdir -p "$out"
# SITE: a folder of packages installed apart from the system's (none: the default is harmless)
export PYTHONPATH=${SITE:-/tmp/site}:$PWD PYTHONUNBUFFERED=1
python3 -c "import torch, ray; print('torch', torch.__version__, torch.cuda.get_device_name(), \
'ray', ray.__version__)" | tee "$out/versions.txt"
. benchmarks/run_step.sh
row() {  # name, seconds, recipe, training sets, settings...
  local name=$1 limit=$2 recipe=$3 sets=$4
  shift 4
  run_step "$name" "$limit" python3 benchmarks/bench_quality.py --data "$data" --recipe "$recipe" \
    --train "$sets" --out /tmp/quality --results "$out/results.jsonl" --cpus "${CPUS:-15}" \
    --set train_crop=224 "$@"
}
row npr_ffhq 120 npr ffhq_stylegan --set epochs_full="$epochs"
rc=$?; [ $rc -eq 0 ] || [ $rc -eq 124 ] || exit 1  # a broken first row stops the session
row nprfull_ffhq 120 npr-full ffhq_stylegan --set epochs_full="$epochs"
row npr_all 150 npr all --set epochs_full="$epochs_all" --eval-jpeg 90
row nprfull_all 180 npr-full all --set epochs_full="$epochs_all"
# every set drawn about equally often; its epochs are 1.38x longer, so 5/7 of them see as many faces
row nprfull_all_balanced 180 npr-full all --set epochs_full="$((epochs_all * 5 / 7))" \
  --set balance_sources=True
# Real faces only (self-blends, never a fake), each part of the blend a row; then the
# supervised sets with blends added (the combined row)
real_row() {  # name, seconds, settings...: the whole network on the real faces of all sets
  local name=$1 limit=$2
  shift 2
  row "$name" "$limit" npr-full all --real-only --set epochs_full="$epochs_all" "$@"
}
real_row real_all 180
# self-blends only: no blend pastes another real face (the default pastes one in half of them,
# Face X-ray's blends of two people: a swap changes the identity, a self-blend does not)
real_row real_all_selfonly 150 --set blend_donors=0
# each blend's region drawn from three (forehead to chin, brows to chin, brows to mouth), as
# SBI and Face X-ray draw theirs, instead of the outline alone
real_row real_all_hulls 150 --set blend_mask=hulls
# each blend of two people pastes one of the 100 real faces posed most like the face (Face
# X-ray's choice), instead of any
real_row real_all_posed 150 --set blend_donor_pool=100
real_row real_all_noboundary 150 --set boundary_weight=0
real_row real_all_ellipse 150 --set blend_mask=ellipse
# half the faces, real and blended alike, re-encoded as JPEG after blending (SBI's setting)
real_row real_all_jpeg 150 --set blend_jpeg=0.5
# each face beside its own blend in the batch, cut and jittered alike (SBI's batches), without
# and with SBI's re-encoding
real_row real_all_pairs 150 --set blend_pairs=True
real_row real_all_sbi 150 --set blend_pairs=True --set blend_jpeg=0.5
row combined_all 180 npr-full all --set epochs_full="$epochs_all" --set self_blend=True
row npr_without_ffhq 120 npr ciplab_photoshop,lfw_faceswap,celeb_faceedit \
  --set epochs_full="$epochs_all"  # StyleGAN held out: a generator never seen
row rgb_layer2_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set arch=resnet50_layer2
row npr_flip_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set tta=flip
row npr_standard_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set augment=standard
row srm_layer2_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set arch=resnet50_layer2_srm
row dwt_layer2_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set arch=resnet50_layer2_dwt
# 0.99: an average over the last ~100 steps (~5 epochs of 22 steps); 0.999's 1,000-step
# horizon would reach back to the run's first epochs on this set
row npr_ema_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set ema=0.99
row npr_cutmix_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set mix=cutmix
row npr_smooth_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set label_smoothing=0.1
row npr_droppath_ffhq 90 npr ffhq_stylegan --set epochs_full="$epochs" --set drop_path=0.1
# a committee: the two all-sets models above, their logits averaged (twice the scoring cost)
run_step average_all 120 python3 benchmarks/bench_average.py --data "$data" \
  /tmp/quality/npr_all_train_crop-224_epochs_full-*/last.pt \
  /tmp/quality/npr-full_all_train_crop-224_epochs_full-*/last.pt
python3 benchmarks/bench_quality.py --results "$out/results.jsonl" --table | tee "$out/table.md"

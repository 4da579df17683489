#!/usr/bin/env bash
# Second GPU session: the 3.0 mm model of train3d_two_spacings.sh trained on for two more levels,
# on 48 new phantoms (seeds 1000-1047), at a lower learning rate. Writes $OUT/run/models/model.pt.
set -euo pipefail
OUT=${OUT:-/tmp/finetune3d}
DATA=${DATA:-/tmp/phantoms3d-b}
INITIAL=${INITIAL:?the model to start from}
CONFIGS=MonaiBundle/configs
date +%T
python3 -m fetalbiometry.segment3d.phantom_dataset "$DATA" --train 48 --validation 4 --seed 1000 --workers "$(nproc)"
date +%T
python3 -m monai.bundle run training --meta_file $CONFIGS/metadata.json --config_file $CONFIGS/train.json \
    --datalist "$DATA/datalist.json" --load_transforms#0#reader NibabelReader --target_spacing "[3.0,3.0,3.0]" \
    --initial_weights "$INITIAL" --learning_rate 0.0005 --epochs_per_level 400 --minutes_per_level "${MINUTES:-1.7}" \
    --val_interval 10 --num_workers 12 --train#dataset#num_workers 12 --output_dir "$OUT/run" >"$OUT/train.log" 2>&1
date +%T

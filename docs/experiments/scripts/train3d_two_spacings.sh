#!/usr/bin/env bash
# The 3D segmenter trained at two working spacings on one GPU, then both evaluated on held-out
# phantoms at scanner spacings (docs/experiments/2026-12-04-3d-physical-scale.md).
# Run from the repository root with fetalbiometry, MONAI, ignite, nibabel and SimpleITK importable.
# Writes to $OUT: the two models, their training logs and their test metrics.
set -euo pipefail
OUT=${OUT:-/tmp/train3d}
DATA=${DATA:-/tmp/phantoms3d}
MINUTES=${MINUTES:-1.6}
SPACINGS=${SPACINGS:-"2.0 3.0"}
CONFIGS=MonaiBundle/configs
mkdir -p "$OUT"
# NibabelReader: the same NIfTI files, without the itk package the GPU machine lacks
READER=(--load_transforms#0#reader NibabelReader)

date +%T
python3 -m fetalbiometry.segment3d.phantom_dataset "$DATA" --train 64 --validation 8 --test 12 \
    --test-spacing-range 0.4 1.2 --workers "$(nproc)"
date +%T
for S in $SPACINGS; do
    python3 -m monai.bundle run training --meta_file $CONFIGS/metadata.json --config_file $CONFIGS/train.json \
        --datalist "$DATA/datalist.json" "${READER[@]}" --target_spacing "[$S,$S,$S]" \
        --epochs_per_level 400 --minutes_per_level "$MINUTES" --val_interval 10 --num_workers 5 \
        --train#dataset#num_workers 6 --output_dir "/tmp/run-$S" >"$OUT/train-$S.log" 2>&1 &
done
wait
date +%T
for S in $SPACINGS; do
    python3 -m monai.bundle run evaluating --meta_file $CONFIGS/metadata.json \
        --config_file "['$CONFIGS/train.json','$CONFIGS/evaluate.json']" --datalist "$DATA/datalist.json" \
        "${READER[@]}" --target_spacing "[$S,$S,$S]" --ckpt_path "/tmp/run-$S/models/model.pt" \
        --validate#dataset#num_workers 6 --output_dir "/tmp/eval-$S" >"$OUT/eval-$S.log" 2>&1 &
done
wait
date +%T
for S in $SPACINGS; do
    cp "/tmp/run-$S/models/model.pt" "$OUT/model-$S.pt"
    cp "/tmp/eval-$S/metrics.csv" "$OUT/metrics-$S.csv"
done
python3 - "$DATA/datalist.json" >"$OUT/test_phantoms.csv" <<'PY'
import json, sys
entries = json.load(open(sys.argv[1]))["test"]
print("image,spacing_x,spacing_y,spacing_z,ga_weeks,volume_ml")
for e in entries:
    print(",".join(str(v) for v in [e["image"], *e["spacing_mm"], e["ga_weeks"], e["volume_ml"]]))
PY

#!/usr/bin/env bash
# The Two Tricks paper's multi-scale consistency in PriMaPs-EM, measured (Docs/fitting.md, issue 24):
# for each seed, `unseg synth` with --small-objects (300 train images with --crops 2, 100 val),
# `unseg propose --refine crf`, the Baseline of Recipes/demo.yaml (pca-init, cosine-kmeans), then
# PriMaPs-EM from it at each primaps-em.consistency_weight (0 = without the criterion), predict val,
# `unseg evaluate --by-size`. Prints one line per (seed, weight): Acc, mIoU, the small-object IoU
# (ground-truth segments under 0.5% of the image) and the mean IoU per size bin.
#   Tools/multiscale-consistency.sh [--seeds "0 1 2"] [--weights "0 1"] [--small-objects 12]
#                                   [--crop-scale 0.5,0.5] [--recipe R] [--dir D]
# About 2 minutes per seed and weight on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="0 1 2"; weights="0 1"; small=12; scale=0.5,0.5; recipe=Recipes/demo.yaml; dir=.build/multiscale
while (($#)); do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
    --small-objects) small=$2; shift 2 ;;
    --crop-scale) scale=$2; shift 2 ;;
    --recipe) recipe=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "multiscale-consistency: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
U=${UNSEG:-}
if [ -z "$U" ]; then swift build -c release --product unseg >&2; U=$PWD/.build/release/unseg; fi
recipe=$(cd "$(dirname "$recipe")" && pwd)/$(basename "$recipe")
mkdir -p "$dir"
printf "%-5s %-7s %7s %7s %8s   %s\n" seed weight Acc mIoU small "IoU by size (<0.1% 0.1-0.5% 0.5-2% 2-10% >=10%)"
for s in $seeds; do
  d=$dir/seed$s; mkdir -p "$d"
  [ -f "$d/train.h5" ] || "$U" synth --out "$d/train.h5" --images 300 --seed "$s" --small-objects "$small" --crops 2 --crop-scale "$scale" >/dev/null
  [ -f "$d/val.h5" ] || "$U" synth --out "$d/val.h5" --images 100 --split val --seed "$s" --small-objects "$small" >/dev/null
  [ -f "$d/props.h5" ] || "$U" propose --store "$d/train.h5" --out "$d/props.h5" --refine crf --threads 2 >/dev/null 2>&1
  if [ ! -f "$d/baseline.h5" ]; then
    "$U" fit --recipe "$recipe" --stages pca-init,cosine-kmeans --store "$d/train.h5" --proposals "$d/props.h5" \
        --checkpoint "$d/baseline.h5" --threads 2 --seed "$s" >"$d/fit-baseline.log" 2>&1
  fi
  for w in $weights; do
    python3 - "$recipe" "$d/recipe-$w.yaml" "$w" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
section = re.search(r"^primaps-em:\n", text, re.M)
assert section, "the recipe has no primaps-em section"
text = re.sub(r"^  consistency_weight:.*\n", "", text, flags=re.M)
text = text[:section.end()] + "  consistency_weight: %s\n" % sys.argv[3] + text[section.end():]
open(sys.argv[2], "w").write(text)
PY
    rm -f "$d/em-$w.h5" "$d/pred-$w.h5"
    "$U" fit --recipe "$d/recipe-$w.yaml" --store "$d/train.h5" --proposals "$d/props.h5" --init-from "$d/baseline.h5" \
        --checkpoint "$d/em-$w.h5" --threads 2 --seed "$s" >"$d/fit-$w.log" 2>&1
    "$U" predict --checkpoint "$d/em-$w.h5" --store "$d/val.h5" --out "$d/pred-$w.h5" --threads 2 >/dev/null 2>&1
    "$U" evaluate --store "$d/val.h5" --predictions "$d/pred-$w.h5" --by-size --json "$d/eval-$w.json" >/dev/null
    python3 -c "
import json, sys
j = json.load(open(sys.argv[1])); b = j['iou_by_size']
print('%-5s %-7s %7.2f %7.2f %8.2f   %s' % (sys.argv[2], sys.argv[3], j['accuracy'], j['miou'], b['small_iou'],
      ' '.join('%5.1f' % v if v is not None else '    -' for v in b['mean_iou'])))" "$d/eval-$w.json" "$s" "$w"
    rm -f "$d/pred-$w.h5"
  done
done

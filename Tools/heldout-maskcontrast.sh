#!/usr/bin/env bash
# The MaskContrast-style fit on the held-out mosaic corpus (Docs/maskcontrast.md, issue 27):
# for each seed, `unseg synth --scene mosaic` (300 train / 100 val), `unseg propose` at each
# threshold, then the Baseline (pca-init, cosine-kmeans), Segment k-means and MaskContrast-style
# fits of Recipes/demo.yaml, predict val, evaluate. Prints one line per (seed, threshold, method);
# the per-class IoU (evaluate --json) stays in the work folder.
#   Tools/heldout-maskcontrast.sh [--seeds "0 1 2"] [--thresholds "0.4 0.5"] [--recipe R] [--dir D]
# About 3 minutes per seed and threshold on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="0 1 2"; thresholds="0.4 0.5"; recipe=Recipes/demo.yaml; dir=.build/heldout
while (($#)); do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --thresholds) thresholds=$2; shift 2 ;;
    --recipe) recipe=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    -h|--help) sed -n 2,8p "$0"; exit 0 ;;
    *) echo "heldout-maskcontrast: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
swift build -c release --product unseg >&2
U=$PWD/.build/release/unseg
recipe=$(cd "$(dirname "$recipe")" && pwd)/$(basename "$recipe")
mkdir -p "$dir"
printf "%-5s %-9s %-22s %7s %7s\n" seed threshold method Acc mIoU
for s in $seeds; do
  d=$dir/seed$s; mkdir -p "$d"
  [ -f "$d/train.h5" ] || "$U" synth --scene mosaic --out "$d/train.h5" --images 300 --seed "$s" >/dev/null
  [ -f "$d/val.h5" ] || "$U" synth --scene mosaic --out "$d/val.h5" --images 100 --split val --seed "$s" >/dev/null
  first=1
  for t in $thresholds; do
    [ -f "$d/props-$t.h5" ] || "$U" propose --store "$d/train.h5" --out "$d/props-$t.h5" --threshold "$t" --threads 2 >/dev/null 2>&1
    methods=("segment-kmeans:Segment k-means" "maskcontrast,segment-kmeans:MaskContrast-style")
    ((first)) && methods=("pca-init,cosine-kmeans:Baseline (k-means)" "${methods[@]}")
    first=0
    for m in "${methods[@]}"; do
      stages=${m%%:*}; label=${m#*:}; tag=$(echo "$stages" | tr ',' '_')-$t
      rm -f "$d/ck-$tag.h5" "$d/pred-$tag.h5"
      "$U" fit --recipe "$recipe" --stages "$stages" --store "$d/train.h5" --proposals "$d/props-$t.h5" \
          --checkpoint "$d/ck-$tag.h5" --threads 2 --seed "$s" >"$d/fit-$tag.log" 2>&1
      "$U" predict --checkpoint "$d/ck-$tag.h5" --store "$d/val.h5" --out "$d/pred-$tag.h5" --threads 2 >/dev/null 2>&1
      "$U" evaluate --store "$d/val.h5" --predictions "$d/pred-$tag.h5" --json "$d/eval-$tag.json" >/dev/null
      python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('%-5s %-9s %-22s %7.2f %7.2f' % (sys.argv[2], sys.argv[3] if sys.argv[4] != 'Baseline (k-means)' else '-', sys.argv[4], j['accuracy'], j['miou']))" \
          "$d/eval-$tag.json" "$s" "$t" "$label"
      rm -f "$d/pred-$tag.h5"
    done
  done
done

#!/usr/bin/env bash
# Train and evaluate several Pokémon recipes side by side on ONE GPU (an LSTM of 3.5 M parameters leaves most of
# a large GPU idle, so concurrent runs finish about as fast as one), each for the same time budget.
#
#   bash examples/gpu_recipes.sh DATA OUT [SECONDS] [RECIPE ...]
#   bash examples/gpu_recipes.sh pokemon-train-s2.parquet runs/gpu 200 paper context caption stateful
#
# DATA: the pokemon-train folder, or its ids from
#   pixelbytes tokenize --data ../shared/data/pokemon-train --data-slicing 2 --output pokemon-train-s2.parquet
# Each recipe writes OUT/RECIPE/ (model, eval_results.json, evaluation_report.md, figures) and OUT/RECIPE.log.
set -uo pipefail
DATA=$1
OUT=$2
SECONDS_PER_RUN=${3:-200}
shift $(( $# < 3 ? $# : 3 ))
RECIPES=("$@")
[ ${#RECIPES[@]} -eq 0 ] && RECIPES=(paper)
mkdir -p "$OUT"
WORKERS=$(( $(nproc) / ${#RECIPES[@]} - 1 ))
[ "$WORKERS" -lt 1 ] && WORKERS=1
for recipe in "${RECIPES[@]}"; do
  python3 examples/train_pokemon.py --recipe "$recipe" --data "$DATA" --output-dir "$OUT/$recipe" \
    --time-budget "$SECONDS_PER_RUN" --v1-max-segments 2048 -- \
    --dataloader_num_workers "$WORKERS" --tf32 true > "$OUT/$recipe.log" 2>&1 &
done
wait
for recipe in "${RECIPES[@]}"; do
  echo "== $recipe"
  grep -A8 "^recipe $recipe:" "$OUT/$recipe.log" || tail -5 "$OUT/$recipe.log"
done

#!/usr/bin/env bash
# The whole flow on built-in synthetic drawings: offline, on CPU, in a few minutes.
#
# Each step is a `manga-pix2pix` command exactly as a user runs it on real data (see docs/):
# build a TFDS dataset, train the small preset, evaluate on the held-out split, then colour a
# new sketch with a cue file. Everything is written under $DEMO_DIR (default: demo-run).
# Running it again starts over (it only deletes a $DEMO_DIR that it made itself).
set -euo pipefail

DEMO_DIR="${DEMO_DIR:-demo-run}"
# Train steps (batch 4 at 128 px); DEMO_STEPS=100 gives a quick look at the flow.
STEPS="${DEMO_STEPS:-1500}"

DATA_DIR="$DEMO_DIR/data"
# The dataset's TFDS name: 128-px images, 15 % of post ids held out as the test split.
DATASET="danbooru/128-test15"
RUN="$DEMO_DIR/run"
EVAL="$DEMO_DIR/eval"
SAMPLE="$DEMO_DIR/sample"

show() {
    printf '\n$ %s\n' "$*"
    "$@"
}

# Start over, but only ever delete a folder this script made.
MARKER="$DEMO_DIR/.manga-pix2pix-demo"
if [ -e "$DEMO_DIR" ] && [ ! -f "$MARKER" ]; then
    echo "error: $DEMO_DIR exists and was not made by this demo; set DEMO_DIR to a new folder" >&2
    exit 1
fi
start=$SECONDS
rm -rf "$DEMO_DIR"
mkdir -p "$SAMPLE"
touch "$MARKER"

echo "== 1. Build a dataset: 400 synthetic illustrations, a quarter of them in a busier, hatched style"
show manga-pix2pix build-dataset --source synthetic --max-images 400 --busy-fraction 0.25 \
    --image-size 128 --test-fraction 0.15 --data-dir "$DATA_DIR"

echo
echo "== 2. Train the small preset. The complexity ceiling leaves the busy style out of training,"
echo "==    so that evaluation can test the model on a style it has never seen (interpolation)."
show manga-pix2pix train --data "$DATASET" --data-dir "$DATA_DIR" --preset small \
    --steps "$STEPS" --complexity-ceiling 27 --run-dir "$RUN"

echo
echo "== 3. Evaluate on the held-out split: the model with and without cues against baselines"
show manga-pix2pix evaluate --model "$RUN" --data "$DATASET" --data-dir "$DATA_DIR" -o "$EVAL"
echo "(Two of the synthetic source's 12 characters are drawn only into the test split: they make"
echo "the transfer task, characters the model has never seen.)"

echo
echo "== 4. Colour a new drawing: its sketch and a cue layer, as an artist would give them"
python - "$SAMPLE/colour.png" <<'PY'
import sys

from manga_pix2pix.data.synthetic import synthetic_image
from manga_pix2pix.imageio import write_image

# A seed far past the dataset's (its 400 seeds start at 1), at 256 px: twice the model's size.
write_image(sys.argv[1], synthetic_image(9001, 256))
PY
show manga-pix2pix sketchify "$SAMPLE/colour.png" -o "$SAMPLE/sketch.png"
show manga-pix2pix cues "$SAMPLE/colour.png" -o "$SAMPLE/cues.png"
show manga-pix2pix colorize "$SAMPLE/sketch.png" --cues "$SAMPLE/cues.png" --model "$RUN" \
    -o "$SAMPLE/coloured.png"
show manga-pix2pix colorize "$SAMPLE/sketch.png" --no-cues --model "$RUN" \
    -o "$SAMPLE/coloured-no-cues.png"

echo
echo "== Held-out metrics (all of $EVAL/metrics.md has them per task):"
awk '/^## all/ {on = 1} /^## / && !/^## all/ {on = 0} on' "$EVAL/metrics.md"
echo "== Done in $((SECONDS - start)) s. Look at:"
echo "   evaluation figures (sketch | cues | output | truth):"
for figure in "$EVAL"/figures/*.png; do
    echo "     $figure"
done
echo "   metrics:            $EVAL/metrics.md, $EVAL/metrics.json"
echo "   training previews:  $RUN/previews/"
echo "   the new drawing:    $SAMPLE/sketch.png + $SAMPLE/cues.png -> $SAMPLE/coloured.png"
echo "                       (without cues: $SAMPLE/coloured-no-cues.png)"
echo "== Paint cues yourself in the browser: open a sketch, paint strokes, watch it colour:"
echo "   manga-pix2pix serve --model $RUN --open"

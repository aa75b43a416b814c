#!/usr/bin/env bash
# An image classifier (a CNN): make the images, train, evaluate on held-out images, predict.
# Run it from this folder: bash run.sh
set -euo pipefail
python make_data.py
nndsl train shapes.nn --run-dir runs/shapes --overwrite --quiet
nndsl evaluate runs/shapes --data shapes_test.npz
nndsl predict runs/shapes --input new_images.npy

#!/usr/bin/env bash
# Your own CSV classifier, end to end: make the data, train, evaluate on held-out rows, predict.
# Run it from this folder: bash run.sh
set -euo pipefail
python make_data.py
nndsl train flowers.nn --run-dir runs/flowers --overwrite --quiet
nndsl evaluate runs/flowers --data test.csv
nndsl predict runs/flowers --input new.csv --top-k 2
nndsl predict runs/flowers --input new.csv --output predictions.csv

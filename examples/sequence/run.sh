#!/usr/bin/env bash
# A sequence model (a GRU): make the waves, train, evaluate (mae, rmse, r2), predict.
# Run it from this folder: bash run.sh
set -euo pipefail
python make_data.py
nndsl train waves.nn --run-dir runs/waves --overwrite --quiet
nndsl evaluate runs/waves --data waves_test.npz
nndsl predict runs/waves --input new_waves.npy

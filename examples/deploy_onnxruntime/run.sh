#!/usr/bin/env bash
# Deploy the flower classifier of ../csv_classifier with onnxruntime alone (deploy.py does not
# import nndsl). Run it from this folder: bash run.sh
set -euo pipefail
model=../csv_classifier/runs/flowers/model.onnx
if [ ! -f "$model" ]; then
  (cd ../csv_classifier && bash run.sh > /dev/null)
fi
cp "$model" flowers.onnx                  # this file is all a server needs
python deploy.py flowers.onnx ../csv_classifier/new.csv

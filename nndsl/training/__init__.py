"""Training: the orchestration of a run (run.py) and one registered trainer per algorithm
(trainers/). Importing this package is cheap; the engines import torch only when used."""

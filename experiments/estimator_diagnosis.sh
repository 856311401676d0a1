#!/usr/bin/env bash
# Why does GLAI's estimator peak early and then lose accuracy on some data (offline/A2_14k: DBPedia-14,
# 14,000 train rows)? The same selector (same seed: the reduced phase is identical in every run) with the
# estimator under Adam (coupled L2, the protocol) or AdamW (decoupled), weight decay 0.1 (WD(GLAI)) or 0,
# lr 1e-3 or 1e-4 (head.lr changes the estimator's alone: head.reduced_lr keeps experiment.lr); the MLP
# with SGD (the protocol) and Adam for reference. Records go to results/diagnosis/ (RESULTS_DIR), then
#   python scripts/plot_estimator_curves.py --runs results/diagnosis
# draws the validation score per estimator epoch of every variant.
# Example: SEEDS=0 experiments/estimator_diagnosis.sh parallel
source "$(dirname "$0")/common.sh"
RESULTS_DIR="${RESULTS_DIR:-results/diagnosis}"
EXPERIMENTS="${EXPERIMENTS:-offline/A2_14k}"
sweep "experiment=$EXPERIMENTS" "head=glai" "head.optimizer=adam,adamw" "head.weight_decay=0.1,0.0" \
  "head.lr=1e-3,1e-4" "seed=$SEEDS" "results_dir=$RESULTS_DIR"
sweep "experiment=$EXPERIMENTS" "head=mlp" "head.optimizer=sgd,adam" "seed=$SEEDS" "results_dir=$RESULTS_DIR"

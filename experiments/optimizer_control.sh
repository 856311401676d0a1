#!/usr/bin/env bash
# The optimiser-controlled variant (docs/method.md, Heads and optimisers): the paper gives the MLPs SGD and
# GLAI's estimator Adam.
#   tag=adam: every MLP-type head (mlp, mlp_reduced, linear) with Adam -> compared with GLAI's protocol runs
#   tag=sgd:  GLAI's estimator with SGD                              -> compared with the MLPs' protocol runs
# make tables writes these views to results/tables/adam/ and results/tables/sgd/ (glai.results.stats.VIEWS).
# Learning rates and weight decays stay those of conf/ (only the optimiser changes).
# Example: EXPERIMENTS=digits experiments/optimizer_control.sh parallel
source "$(dirname "$0")/common.sh"
EXPS="${EXPERIMENTS:-$PAPER_EXPERIMENTS}"
sweep "experiment=$EXPS" "head=mlp,mlp_reduced,linear" "head.optimizer=adam" "tag=adam" "seed=$SEEDS"
sweep "experiment=$EXPS" "head=glai" "head.optimizer=sgd" "tag=sgd" "seed=$SEEDS"

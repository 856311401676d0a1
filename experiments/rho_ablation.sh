#!/usr/bin/env bash
# Figure 4: GLAI at rho in {0.25, 0.375, 0.5, 0.625, 0.75} on A1 and C1 (and the stand-in offline/C1 and
# digits). The MLP baseline line comes from the protocol runs (paper.sh / offline.sh / digits.sh); the
# rho=0.5 runs coincide with the protocol's GLAI runs and are skipped when those exist.
# Example: EXPERIMENTS=digits experiments/rho_ablation.sh parallel
source "$(dirname "$0")/common.sh"
RHOS="${RHOS:-0.25,0.375,0.5,0.625,0.75}"
sweep "experiment=${EXPERIMENTS:-A1,C1,offline/C1,digits}" "head=glai" "rho=$RHOS" "seed=$SEEDS"

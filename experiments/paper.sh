#!/usr/bin/env bash
# The paper's suite (Tables 2-5): 6 experiments x 4 heads x 3 seeds, protocol settings from conf/.
# Needs the backbones and datasets (hub or offline copies). Example: experiments/paper.sh slurm
source "$(dirname "$0")/common.sh"
sweep "experiment=${EXPERIMENTS:-$PAPER_EXPERIMENTS}" "head=$HEADS_ALL" "seed=$SEEDS"

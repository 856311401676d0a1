#!/usr/bin/env bash
# The embedded digits suite (scikit-learn digits, no backbone): 4 heads x 3 seeds in about a minute on a CPU.
# Example: experiments/digits.sh parallel
source "$(dirname "$0")/common.sh"
sweep "experiment=digits" "head=$HEADS_ALL" "seed=$SEEDS"

#!/usr/bin/env bash
# The stand-in suite: conf/experiment/offline/*, runnable without the hub; each offline/X is compared with
# the paper's X in results/tables/comparison.md. Example: experiments/offline.sh local
source "$(dirname "$0")/common.sh"
sweep "experiment=${EXPERIMENTS:-$OFFLINE_EXPERIMENTS}" "head=$HEADS_ALL" "seed=$SEEDS"

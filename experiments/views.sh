#!/usr/bin/env bash
# The four views of the paper's question on digits and the stand-ins (docs/views.md, The views), 3 seeds each;
# make tables puts them side by side (results/tables/views.md, views_tests.md; each view's Tables 2-5 in its
# folder).
#   protocol: each experiment's own config (digits and the stand-ins: auto reduced epochs; docs/method.md,
#             Reduced-epoch rule)
#   fixed:    GLAI with the paper's fixed reduced-epoch count (experiment.reduced_epochs), tag fixed
#   adam/sgd: optimiser-controlled (docs/method.md, Heads and optimisers): the MLP with Adam (tag adam), GLAI's
#             estimator with SGD (tag sgd)
#   tuned:    every head with the settings of its own search on a tuning split (experiments/tune.sh)
# Heads: HEADS (default mlp,glai). Family C's tuned view draws its episodes from classes its search never saw.
# Example: experiments/views.sh parallel            (about 1.5 h on 2 CPU cores, embeddings included)
#          EXPERIMENTS=digits experiments/views.sh  (about 5 minutes)
source "$(dirname "$0")/common.sh"
EXPS="${EXPERIMENTS:-digits,$OFFLINE_EXPERIMENTS}"
HEADS="${HEADS:-mlp,glai}"
sweep "experiment=$EXPS" "head=$HEADS" "seed=$SEEDS"
sweep "experiment=$EXPS" head=glai experiment.reduced_epochs_mode=fixed tag=fixed "seed=$SEEDS"
sweep "experiment=$EXPS" head=mlp head.optimizer=adam tag=adam "seed=$SEEDS"
sweep "experiment=$EXPS" head=glai head.optimizer=sgd tag=sgd "seed=$SEEDS"
EXPERIMENTS="$EXPS" HEADS="$HEADS" "$(dirname "$0")/tune.sh" "$LAUNCHER" "${EXTRA[@]}"

#!/usr/bin/env bash
# Hyperparameter searches (SPEC 12 "Tuned comparison"), then the tuned suite. For every experiment and head:
#   1. `run.py -m tuning=search`: HYDRA_TRIALS (default 16) Optuna TPE trials over the head's optimiser (sgd, adam,
#      adamw), learning rate and weight decay -- GLAI: its estimator's, plus the reduced-epoch fraction of the
#      auto rule -- each trained on train minus a stratified 20 % tuning split (tuning.seed 0) and scored on
#      that split, never on the validation split (conf/tuning/search.yaml). Run seed 0.
#   2. scripts/save_tuned.py: the best settings -> conf/tuned/best/<experiment>/<head>.yaml.
#   3. `run.py -m tuning=best seed=$SEEDS`: the tuned runs (tag tuned), which make tables shows as the
#      "tuned" view (results/tables/tuned/, views.md).
# Family C has no training split: its trials average C_EPISODES (default 5) episodes drawn from 20 % of the
# pool's classes (of every class's rows when there are fewer than 2 x n_way classes), and its tuned runs draw
# their episodes from the rest (tuning.role held_out).
# Searches whose conf/tuned/best file exists are skipped (delete it, or RETUNE=1, to search again).
# Environment: EXPERIMENTS (default digits and the six stand-ins), HEADS (default mlp,glai),
#   HYDRA_TRIALS, C_EPISODES, RETUNE, SEEDS.
# Example: EXPERIMENTS=digits HEADS=mlp,mlp_reduced,linear,glai experiments/tune.sh parallel
source "$(dirname "$0")/common.sh"
EXPS="${EXPERIMENTS:-digits,$OFFLINE_EXPERIMENTS}"
HEADS="${HEADS:-mlp,glai}"
TRIALS="${HYDRA_TRIALS:-16}"
RUNS="${TUNING_RUNS:-results/tuning/runs}"
for exp in ${EXPS//,/ }; do
  for head in ${HEADS//,/ }; do
    best="$ROOT/conf/tuned/best/$exp/$head.yaml"
    if [[ -f "$best" && -z "${RETUNE:-}" ]]; then
      echo "$best exists: search skipped (RETUNE=1 searches again)" >&2
      continue
    fi
    fixed=()
    family="$(cd "$ROOT" && "$PYTHON" -c "import sys; from glai.config import compose_config; \
print(compose_config([sys.argv[1]]).experiment.family)" "experiment=$exp")"
    if [[ "$family" == C ]]; then fixed=("episodes=${C_EPISODES:-5}"); fi
    extra=()
    if [[ "$head" == glai ]]; then
      # the auto rule's MLP partner on the tuning split, trained once before the trials that share it
      (cd "$ROOT" && "$PYTHON" run.py tuning=search "experiment=$exp" head=mlp "results_dir=$RUNS" verbose=false \
        "${fixed[@]}")
      extra=(experiment.reduced_epochs_mode=auto "experiment.reduced_fraction=interval(0.05, 0.5)")
    fi
    dir="results/tuning/sweeps/$exp/$head"
    sweep tuning=search "experiment=$exp" "head=$head" "hydra.sweeper.n_trials=$TRIALS" "results_dir=$RUNS" \
      "hydra.sweep.dir=$dir" verbose=false "${fixed[@]}" "${extra[@]}"
    (cd "$ROOT" && "$PYTHON" scripts/save_tuned.py "$dir")
  done
done
sweep tuning=best "experiment=$EXPS" "head=$HEADS" "seed=$SEEDS"

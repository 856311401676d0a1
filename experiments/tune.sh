#!/usr/bin/env bash
# Hyperparameter searches (docs/method.md, Tuned comparison and Tuned choice), then the tuned suite. For every
# experiment and head:
#   1. One Optuna study of HYDRA_TRIALS (default 16) trials (hydra/sweeper=glai_optuna, conf/tuning/search.yaml),
#      run seed 0, each trained on train minus a stratified 20 % tuning split and scored on it (5-fold below 500
#      tuning rows, else 3 repeated splits: every score has a standard error), never on the validation split. The
#      first trials are the head's defaults (the protocol's; the same head on Adam -- GLAI: its reduced phase on
#      Adam), then TPE over the head's optimiser (sgd, adam, adamw; lbfgs outside family B, at its step length 1),
#      learning rate and weight decay -- GLAI: its whole pipeline, the selector (trained, random) and a trained
#      selector's reduced-phase optimiser, lr and length in epochs (1 .. half the protocol MLP's epochs on the
#      tuning rows, that MLP trained first: glai/search_space.py).
#      The study persists in <sweep dir>/optuna.journal under the search's identity: a search cut off (a time limit,
#      a lost login node) and started again keeps its trials, never runs a parameter set twice, and runs the rest.
#   2. scripts/save_tuned.py: the one-standard-error choice (a trial replaces the protocol default only when it
#      beats it by more than its standard error), its settings read from the record of the trial that ran ->
#      $TUNED_OUT/<experiment>/<head>/<group>.yaml (TUNED_OUT default GLAI_TUNED_DIR or results/tuned;
#      TUNED_OUT=conf/tuned/best refreshes the shipped ones).
#   3. `run.py -m tuning=best seed=$SEEDS`: the tuned runs (tag tuned), which make tables shows as the
#      "tuned" view (results/tables/tuned/, views.md, tuning_gain.md).
# Family C has no training split: its trials average C_EPISODES (default 5) episodes drawn from 20 % of the
# pool's classes (of every class's rows when there are fewer than 2 x n_way classes), and its tuned runs draw
# their episodes from the rest (tuning.role held_out).
# Searches whose group already has tuned settings (in TUNED_OUT or conf/tuned/best) are skipped (RETUNE=1 searches
# again, resuming its study; SHIPPED=0 ignores conf/tuned/best, in the skip and in the tuned runs alike: a study
# that reads only its own searches). Your own data: pass its overrides after the launcher; they reach the searches
# and the tuned runs alike, so the settings belong to that data:
#   EXPERIMENTS=offline/A1 experiments/tune.sh parallel dataset=folder dataset.path=/data/photos \
#     dataset.name=photos "experiment.arch=[1280,256,3]"
# Environment: EXPERIMENTS (default digits and the six stand-ins), HEADS (default mlp,glai,linear),
#   HYDRA_TRIALS, C_EPISODES, RETUNE, SHIPPED, SEEDS.
# Example: EXPERIMENTS=digits HEADS=mlp,mlp_reduced,linear,glai experiments/tune.sh parallel
source "$(dirname "$0")/common.sh"
EXPS="${EXPERIMENTS:-digits,$OFFLINE_EXPERIMENTS}"
HEADS="${HEADS:-mlp,glai,linear}"
TRIALS="${HYDRA_TRIALS:-16}"
if ! [[ "$TRIALS" =~ ^[0-9]+$ ]] || ((10#$TRIALS < 1)); then
  echo "[glai] ConfigError: HYDRA_TRIALS='$TRIALS': each search's budget is a whole number of trials >= 1 (the" \
    "head's default trials count in it). Fix: HYDRA_TRIALS=16 experiments/tune.sh ..." >&2
  exit 2
fi
RUNS="${TUNING_RUNS:-results/tuning/runs}"
TUNED_OUT="${TUNED_OUT:-${GLAI_TUNED_DIR:-results/tuned}}"
shipped=()
if [[ "${SHIPPED:-1}" == 0 ]]; then shipped=(tuning.shipped=false); fi
# a misspelled override fails here, before any search (save_tuned.py --find composes the config)
rc=0
err="$(cd "$ROOT" && "$PYTHON" scripts/save_tuned.py --out "$TUNED_OUT" --find "experiment=${EXPS%%,*}" \
  "head=${HEADS%%,*}" "${shipped[@]}" "${EXTRA[@]}" 2>&1 >/dev/null)" || rc=$?
if ((rc > 1)); then echo "$err" >&2; exit 2; fi
for exp in ${EXPS//,/ }; do
  for head in ${HEADS//,/ }; do
    if [[ -z "${RETUNE:-}" ]] && best="$(cd "$ROOT" && "$PYTHON" scripts/save_tuned.py --out "$TUNED_OUT" --find \
        "experiment=$exp" "head=$head" "${shipped[@]}" "${EXTRA[@]}")"; then
      echo "$best exists: search skipped (RETUNE=1 searches again)" >&2
      continue
    fi
    fixed=()
    family="$(cd "$ROOT" && "$PYTHON" -c "import sys; from glai.config import compose_config; \
print(compose_config([sys.argv[1]]).experiment.family)" "experiment=$exp")"
    if [[ "$family" == C ]]; then fixed=("episodes=${C_EPISODES:-5}"); fi
    if [[ "$head" == glai ]]; then
      # the longest reduced phase searched: half the protocol MLP's epochs on the same tuning rows (trained here)
      fixed+=("$(cd "$ROOT" && "$PYTHON" scripts/save_tuned.py --reduced-range "experiment=$exp" \
        "results_dir=$RUNS" "${fixed[@]}" "${EXTRA[@]}" | tail -n 1)")
    fi
    dir="results/tuning/sweeps/$exp/$head${EXTRA:+-$(printf '%s' "${EXTRA[*]}" | sha1sum | cut -c1-8)}"
    # the study (<dir>/optuna.journal) is named by the search's identity: these overrides, the ranges and the
    # search space's code; the defaults and every trial are in it, so a resumed search runs only what is missing
    sweep tuning=search "experiment=$exp" "head=$head" "hydra.sweeper.n_trials=$TRIALS" \
      "results_dir=$RUNS" "hydra.sweep.dir=$dir" verbose=false "${fixed[@]}"
    (cd "$ROOT" && "$PYTHON" scripts/save_tuned.py "$dir" --out "$TUNED_OUT")
  done
done
GLAI_TUNED_DIR="$TUNED_OUT" sweep tuning=best "experiment=$EXPS" "head=$HEADS" "seed=$SEEDS" "${shipped[@]}"

#!/usr/bin/env bash
# Hyperparameter searches (SPEC 12 "Tuned comparison"), then the tuned suite. For every experiment and head:
#   1. HYDRA_TRIALS (default 16) trials per head, each trained on train minus a stratified 20 % tuning split
#      (tuning.seed 0) and scored on that split, never on the validation split (conf/tuning/search.yaml), run seed 0:
#      first the head's two defaults (the protocol's; the same head on Adam -- GLAI: its reduced phase on Adam),
#      then `run.py -m tuning=search` Optuna TPE trials over the head's optimiser (sgd, adam, adamw; lbfgs outside
#      family B, at its step length 1: glai/search_space.py), learning rate
#      and weight decay -- GLAI: its whole pipeline, the estimator's and the reduced phase's optimiser and lr, the
#      selector (trained, random) and the auto rule's fraction.
#      The Optuna study persists in <sweep dir>/optuna.db under a name that is the search's identity: a search cut
#      off (a time limit, a lost login node) and started again keeps its finished trials and runs the rest.
#   2. scripts/save_tuned.py: the best of all trials (defaults included) for the searched group ->
#      $TUNED_OUT/<experiment>/<head>/<group>.yaml (TUNED_OUT default GLAI_TUNED_DIR or results/tuned;
#      TUNED_OUT=conf/tuned/best refreshes the shipped ones). A tuned GLAI's auto rule reads the tuned MLP.
#   3. `run.py -m tuning=best seed=$SEEDS`: the tuned runs (tag tuned), which make tables shows as the
#      "tuned" view (results/tables/tuned/, views.md).
# Family C has no training split: its trials average C_EPISODES (default 5) episodes drawn from 20 % of the
# pool's classes (of every class's rows when there are fewer than 2 x n_way classes), and its tuned runs draw
# their episodes from the rest (tuning.role held_out).
# Searches whose group already has tuned settings (in TUNED_OUT or conf/tuned/best) are skipped (RETUNE=1 searches
# again; SHIPPED=0 ignores conf/tuned/best, in the skip and in the tuned runs alike: a study that reads only its own
# searches). Your own data: pass its overrides after the launcher; they reach the searches, the partner MLP and the
# tuned runs alike, so the settings belong to that data:
#   EXPERIMENTS=offline/A1 experiments/tune.sh parallel dataset=folder dataset.path=/data/photos \
#     dataset.name=photos "experiment.arch=[1280,256,3]"
# Environment: EXPERIMENTS (default digits and the six stand-ins), HEADS (default mlp,glai,linear; mlp before glai),
#   HYDRA_TRIALS, C_EPISODES, RETUNE, SHIPPED, SEEDS.
# Example: EXPERIMENTS=digits HEADS=mlp,mlp_reduced,linear,glai experiments/tune.sh parallel
source "$(dirname "$0")/common.sh"
EXPS="${EXPERIMENTS:-digits,$OFFLINE_EXPERIMENTS}"
HEADS="${HEADS:-mlp,glai,linear}"
TRIALS="${HYDRA_TRIALS:-16}"
RUNS="${TUNING_RUNS:-results/tuning/runs}"
TUNED_OUT="${TUNED_OUT:-${GLAI_TUNED_DIR:-results/tuned}}"
shipped=()
if [[ "${SHIPPED:-1}" == 0 ]]; then shipped=(tuning.shipped=false); fi
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
    extra=()
    fixed_glai=()
    # the head's defaults are trials of the same budget: the protocol's, and the same head on Adam
    defaults=("" "head.optimizer=adam")
    if [[ "$head" == glai ]]; then
      # the auto rule's MLP partner on the tuning split, trained once before the trials that share it
      (cd "$ROOT" && "$PYTHON" run.py tuning=search "experiment=$exp" head=mlp "results_dir=$RUNS" verbose=false \
        "${fixed[@]}" "${EXTRA[@]}")
      # GLAI's whole pipeline is searched: the reduced phase's optimiser and lr, the selector, the estimator's
      # optimiser, lr and L2, and the auto rule's fraction
      fixed_glai=(experiment.reduced_epochs_mode=auto)
      extra=("experiment.reduced_fraction=interval(0.05, 0.5)" "head.reduced_optimizer=choice(sgd, adam)"
             "head.reduced_lr=tag(log, interval(1e-4, 3e-1))" "head.selector=choice(trained, random)")
      defaults=("" "head.reduced_optimizer=adam")
    fi
    dir="results/tuning/sweeps/$exp/$head${EXTRA:+-$(printf '%s' "${EXTRA[*]}" | sha1sum | cut -c1-8)}"
    # the study persists beside its sweep (SQLite: only this sweeper process writes it, the trials may run
    # anywhere), named by the search's identity: its fixed overrides, its ranges and the search space's code. A
    # search cut off after k trials resumes with the k kept and runs the rest of its budget.
    mkdir -p "$ROOT/$dir"
    storage="sqlite:///$ROOT/$dir/optuna.db"
    study="$(cd "$ROOT" && cat conf/tuning/search.yaml glai/search_space.py | sha1sum | cut -c1-8)"
    study="search-$(printf '%s\n' "$exp" "$head" "$study" "${fixed[@]}" "${fixed_glai[@]}" "${extra[@]}" \
      "${EXTRA[@]}" | sha1sum | cut -c1-12)"
    finished="$(cd "$ROOT" && "$PYTHON" scripts/save_tuned.py --finished "$storage" "$study")"
    todo=$((TRIALS - ${#defaults[@]} - finished))
    if ((todo < 0)); then todo=0; fi
    if ((finished > 0)); then echo "$dir: study $study has $finished finished trials; running $todo more" >&2; fi
    default_args=()
    for d in "${defaults[@]}"; do
      # shellcheck disable=SC2086
      (cd "$ROOT" && "$PYTHON" run.py tuning=search "experiment=$exp" "head=$head" "results_dir=$RUNS" verbose=false \
        "${fixed[@]}" "${fixed_glai[@]}" "${EXTRA[@]}" $d)
      default_args+=(--default "$d")
    done
    sweep tuning=search "experiment=$exp" "head=$head" "hydra.sweeper.n_trials=$todo" \
      "hydra.sweeper.storage=$storage" "hydra.sweeper.study_name=$study" \
      "results_dir=$RUNS" "hydra.sweep.dir=$dir" verbose=false "${fixed[@]}" "${fixed_glai[@]}" "${extra[@]}"
    (cd "$ROOT" && "$PYTHON" scripts/save_tuned.py "$dir" --out "$TUNED_OUT" "${default_args[@]}")
  done
done
GLAI_TUNED_DIR="$TUNED_OUT" sweep tuning=best "experiment=$EXPS" "head=$HEADS" "seed=$SEEDS" "${shipped[@]}"

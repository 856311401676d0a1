#!/usr/bin/env bash
# The paper's open questions (docs/views.md, The views) on digits and the stand-ins, 3 seeds each, as views
# beside the four of views.sh; make tables puts them side by side (results/tables/views.md, views_tests.md):
#   protocol:  each experiment's own config, heads mlp, glai and linear
#   adam:      the MLP with Adam (tag adam): the reference of the lbfgs view
#   random:    GLAI with a random selector (head.selector=random, tag random): what the trained selector is worth
#   lbfgs:     GLAI's estimator and the linear probe on full-batch L-BFGS (tag lbfgs; families A and C: InfoNCE
#              over batches is another objective)
#   structure: GLAI's structural stop, its threshold chosen per experiment on the tuning split
#              (scripts/structure_threshold.py; tag structure)
#   tuned:     every head with its search's settings (tune.sh: the same budget per head, the head's defaults as
#              its first trials, GLAI's whole pipeline searched; RETUNE=1 searches again)
# Example: EXPERIMENTS=digits,offline/A2 HYDRA_TRIALS=8 experiments/open_questions.sh parallel
source "$(dirname "$0")/common.sh"
EXPS="${EXPERIMENTS:-digits,$OFFLINE_EXPERIMENTS}"
sweep "experiment=$EXPS" head=mlp,glai,linear "seed=$SEEDS"
sweep "experiment=$EXPS" head=mlp head.optimizer=adam tag=adam "seed=$SEEDS"
sweep "experiment=$EXPS" head=glai head.selector=random tag=random "seed=$SEEDS"
family_of() {
  (cd "$ROOT" && "$PYTHON" -c "import sys; from glai.config import compose_config; \
print(compose_config([sys.argv[1]]).experiment.family)" "experiment=$1")
}
AC=()
for exp in ${EXPS//,/ }; do
  if [[ "$(family_of "$exp")" != B ]]; then AC+=("$exp"); fi
done
if [[ ${#AC[@]} -gt 0 ]]; then
  sweep "experiment=$(IFS=,; echo "${AC[*]}")" head=glai,linear head.optimizer=lbfgs head.lr=1.0 tag=lbfgs \
    "seed=$SEEDS"
fi
for exp in ${EXPS//,/ }; do
  # shellcheck disable=SC2207
  stop=($(cd "$ROOT" && "$PYTHON" scripts/structure_threshold.py "experiment=$exp" \
    "results_dir=${TUNING_RUNS:-results/tuning/runs}" "${EXTRA[@]}" | tail -n 1))
  sweep "experiment=$exp" head=glai "${stop[@]}" tag=structure "seed=$SEEDS"
done
EXPERIMENTS="$EXPS" HEADS="${HEADS:-mlp,glai,linear}" "$(dirname "$0")/tune.sh" "$LAUNCHER" "${EXTRA[@]}"

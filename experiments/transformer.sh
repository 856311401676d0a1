#!/usr/bin/env bash
# Family T (SPEC 13, issue 28): GLAI inside the last feed-forward block of a frozen Transformer (all-MiniLM-L6-v2)
# against fine-tuning the block (GELU and its ReLU switch), LoRA and the classifier alone, on the DBPedia and AG
# News stand-ins, 3 seeds each; make tables writes results/tables/transformer.md and transformer_tests.md.
#   protocol:     ffn_mlp, ffn_relu, ffn_lora, ffn_glai, linear
#   random:       ffn_glai with random gates (head.selector=random, tag random): what the pretrained selector is worth
#   relu_switch:  the classifier alone with only the block's activation switched to ReLU (ffn.activation=relu,
#                 tag relu_switch): the switch's own cost
#   tuned:        every head with its own search's settings (experiments/tune.sh: HYDRA_TRIALS trials per head, its
#                 defaults first, 5-fold on the training rows; ffn_glai's selector and selector phase, ffn_lora's
#                 rank), tag tuned; TUNE=0 leaves it out (it is most of the cost: about 60 trainings per head)
# The frozen layers run once per data set (the token cache under GLAI_CACHE_DIR); each run trains one block.
# Example: EXPERIMENTS=ffn/dbpedia SEEDS=0 experiments/transformer.sh parallel
source "$(dirname "$0")/common.sh"
EXPS="${EXPERIMENTS:-ffn/dbpedia,ffn/ag_news}"
sweep "experiment=$EXPS" head=ffn_mlp,ffn_glai,ffn_lora,ffn_relu,linear "seed=$SEEDS"
sweep "experiment=$EXPS" head=ffn_glai head.selector=random tag=random "seed=$SEEDS"
sweep "experiment=$EXPS" head=linear ffn.activation=relu tag=relu_switch "seed=$SEEDS"
if [[ "${TUNE:-1}" != 0 ]]; then
  EXPERIMENTS="$EXPS" HEADS="${HEADS:-ffn_mlp,ffn_relu,ffn_lora,ffn_glai,linear}" "$(dirname "$0")/tune.sh" "$LAUNCHER" \
    "${EXTRA[@]}"
fi

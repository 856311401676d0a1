#!/usr/bin/env bash
# Family T: GLAI inside the last feed-forward block of a frozen Transformer (all-MiniLM-L6-v2) against fine-tuning
# the block (GELU and its ReLU switch), LoRA and the classifier alone, on the DBPedia and AG News stand-ins, 5 seeds
# each (five pairs per set: a one-sided Wilcoxon can reach p = 1/32 on one set alone). make tables writes
# results/tables/transformer.md and transformer_tests.md.
#   protocol:     ffn_mlp, ffn_relu, ffn_lora, ffn_glai, linear, each at its own method's step (conf/head/ffn_*.yaml)
#   random:       ffn_glai with random gates (head.selector=random, tag random): what the pretrained selector is worth
#   relu_switch:  RELU_SWITCH=1 adds the classifier alone with only the block's activation switched to ReLU
#                 (ffn.activation=relu, tag relu_switch): the switch's own cost on a frozen block
#   tuned:        TUNED_HEADS (default ffn_mlp, ffn_lora, ffn_glai, linear) with their own search's settings
#                 (experiments/tune.sh: HYDRA_TRIALS trials per head, default 8, its two defaults first, 2 folds of
#                 the training rows, pruned), tag tuned; TUNE=0 leaves it out
# The frozen layers run once per data set (the token cache under GLAI_CACHE_DIR); each run trains one block.
# Your own data: pass its overrides after the launcher (they reach every run and search):
#   EXPERIMENTS=ffn/dbpedia experiments/transformer.sh parallel dataset=csv dataset.path=/data/news.csv \
#     dataset.name=news "dataset.text_columns=[text]" dataset.label_column=label "experiment.arch=[384,1536,4]"
# Example: EXPERIMENTS=ffn/dbpedia SEEDS=0 TUNE=0 experiments/transformer.sh parallel
SEEDS="${SEEDS:-0,1,2,3,4}"
source "$(dirname "$0")/common.sh"
EXPS="${EXPERIMENTS:-ffn/dbpedia,ffn/ag_news}"
sweep "experiment=$EXPS" head=ffn_mlp,ffn_glai,ffn_lora,ffn_relu,linear "seed=$SEEDS"
sweep "experiment=$EXPS" head=ffn_glai head.selector=random tag=random "seed=$SEEDS"
if [[ "${RELU_SWITCH:-0}" != 0 ]]; then
  sweep "experiment=$EXPS" head=linear ffn.activation=relu tag=relu_switch "seed=$SEEDS"
fi
if [[ "${TUNE:-1}" != 0 ]]; then
  EXPERIMENTS="$EXPS" HEADS="${TUNED_HEADS:-ffn_mlp,ffn_lora,ffn_glai,linear}" HYDRA_TRIALS="${HYDRA_TRIALS:-8}" \
    SEEDS="$SEEDS" "$(dirname "$0")/tune.sh" "$LAUNCHER" "${EXTRA[@]}"
fi

#!/usr/bin/env bash
# The method family beyond the paper (GreenLightningAI and EAT; docs/method.md, The method family), on digits
# and two stand-ins, 3 seeds:
#  1. EAT's l0 activation penalty: a lambda sweep for the MLP and GLAI (firing ratio, active paths, accuracy);
#  2. estimator-only re-training on new classes (experiment=retrain/<name>);
#  3. combining estimators trained on 4 shards, IID and non-IID (experiment=combine/<name>).
# About 45 minutes with the parallel launcher on 2 CPU cores (the stand-ins' embeddings cached first:
# scripts/cache_embeddings.py experiment=offline/A1, and offline/A2_14k).
# Example: experiments/method_family.sh parallel ; make tables    (results/tables/sparsity.md, retrain.md,
#          combine.md, fig_sparsity_<experiment>.png, fig_retrain.png, fig_combine.png)
# Kept apart: experiments/method_family.sh parallel results_dir=results/family ;
#             python scripts/make_tables.py --runs results/family --out results/family/tables
source "$(dirname "$0")/common.sh"
FAMILY_DATA="${FAMILY_DATA:-digits,offline/A1,offline/A2_14k}"
FAMILY_STUDIES="${FAMILY_STUDIES:-digits,offline_A1,offline_A2_14k}"
studies() { local kind=$1 out="" name; for name in ${FAMILY_STUDIES//,/ }; do out+="${out:+,}$kind/$name"; done; echo "$out"; }
sweep "experiment=$FAMILY_DATA" "head=mlp,glai" "head.l0_lambda=0,1e-4,1e-3,1e-2" "seed=$SEEDS"
sweep "experiment=$(studies retrain)" "seed=$SEEDS"
sweep "experiment=$(studies combine)" "study.shard_split=iid,class" "seed=$SEEDS"

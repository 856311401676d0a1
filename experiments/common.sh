# Sourced by the suite scripts: parses the launcher argument and defines `sweep`.
# Usage of every suite script:  experiments/<suite>.sh [LAUNCHER] [extra Hydra overrides ...]
#   LAUNCHER: basic (Hydra's default, one job after another) | parallel (joblib, n_jobs=2) |
#             joblib (joblib, all cores) | local (submitit, subprocesses) | slurm (submitit on Slurm)
# Environment: PYTHON (default .venv/bin/python, else python3), SEEDS (default 0,1,2).
# Runs whose record is already "done" are skipped by the runner, so a suite can be re-run to finish it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAUNCHER="${1:-basic}"
if [[ $# -gt 0 ]]; then shift; fi
EXTRA=("$@")
case "$LAUNCHER" in
  basic|parallel|joblib|local|slurm) ;;
  *) echo "unknown launcher '$LAUNCHER': choose basic, parallel, joblib, local or slurm" >&2; exit 2 ;;
esac
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
SEEDS="${SEEDS:-0,1,2}"
HEADS_ALL="mlp,mlp_reduced,glai,linear"
PAPER_EXPERIMENTS="A1,A2,B1,B2,C1,C2"
OFFLINE_EXPERIMENTS="offline/A1,offline/A2,offline/B1,offline/B2,offline/C1,offline/C2"

# sweep OVERRIDE... : one Hydra multirun with the chosen launcher; the caller's extra overrides come last.
sweep() {
  echo "+ run.py -m hydra/launcher=$LAUNCHER $* ${EXTRA[*]:-}" >&2
  (cd "$ROOT" && "$PYTHON" run.py -m "hydra/launcher=$LAUNCHER" "$@" "${EXTRA[@]}")
}

#!/usr/bin/env bash
# The main job end to end on embedded defaults (local files, sqlite MLflow, no servers):
# generate -> validate -> features -> train -> promote (dvc repro), then score a sample
# through the service's code path. Run by `make demo` inside the project venv.
set -euo pipefail
cd "$(dirname "$0")/.."
# What the pipeline writes (DVC's cache of every version of the declarations, features and
# entity state; MLflow's database and artifacts) is its owner's alone, as parcelrisk's own
# files are (PARCELRISK_UMASK): under the usual 022 any local account read them (probe 18)
umask "${PARCELRISK_UMASK:-077}"
export GX_ANALYTICS_ENABLED=False MPLBACKEND=Agg MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}"

echo "== keys (kept outside the repository; never replaced once made)"
for kind in pseudonym audit; do
  # `keys show` says "KIND: missing: ..." for a kind without a key. Its output is read whole
  # first: piped into `grep -q`, which stops at the first match, it could die writing the next
  # line, and under pipefail the key was then taken as present and never made.
  keys=$(parcelrisk keys show || true)
  if grep -q "^$kind: missing" <<< "$keys"; then
    parcelrisk keys new "$kind"
  fi
done
keys=$(parcelrisk keys show || true)
echo "$keys"
if grep -q ": missing" <<< "$keys"; then  # e.g. a key file named where it cannot be written
  echo "error: a key is still missing (above); every stage needs both" >&2
  exit 2
fi
echo "  (a new pseudonym key means rebuilding features: consignees are keyed by it)"
echo

echo "== pipeline (dvc repro: generate -> validate -> features -> train -> promote)"
dvc repro
echo
echo "== headline test metrics (dvc metrics show)"
dvc metrics show --json | python -c '
import json, sys
headline = ("_at_5", "roc_auc", "ece", "legacy.")
for source in json.load(sys.stdin).values():
    for path, payload in sorted(source.get("data", {}).items()):
        if not path.endswith("train.json"):
            continue
        for key, value in sorted(payload.get("data", {}).items()):
            if any(h in key for h in headline):
                print(f"  {key:<55} {value:.4f}")
'
echo "  (all metrics: dvc metrics show; full run: MLflow UI on sqlite:///mlflow.db)"

echo
echo "== scoring the last 2,000 generated declarations offline (same code path as the API)"
python - <<'PY'
import pandas as pd
from features.intake.contract import DECLARATION_COLUMNS
d = pd.read_parquet("data/raw/declarations.parquet")
d[list(DECLARATION_COLUMNS)].tail(2000).to_parquet("data/processed/sample_to_score.parquet", index=False)
PY
parcelrisk score data/processed/sample_to_score.parquet --out data/processed/sample_scored.parquet
echo
echo "Start the scoring service with:"
echo "  PARCELRISK_API_KEYS=scorer:scorer-key-0123456789,auditor:auditor-key-0123456789,inspector:inspector-key-0123456789 .venv/bin/parcelrisk serve --port 3000"

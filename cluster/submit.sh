#!/usr/bin/env bash
# Submit an xdrl command to a Ray cluster as a Ray job (wraps `ray job submit`).
#
#   cluster/submit.sh [--address URL] [--wait] [--forward-wandb-key] -- tune experiment=cartpole_ppo search=optuna ...
#
#   --address URL          the head's job API (dashboard) address; default $RAY_JOB_ADDRESS or http://127.0.0.1:8265
#                          (with `ray dashboard cluster/aws.yaml` forwarding it, or `kubectl port-forward`)
#   --wait                 stream the job's logs and return its exit status (default: submit and return)
#   --forward-wandb-key    pass your WANDB_API_KEY to the job in its runtime environment (never to a file)
#
# The current directory is shipped as the job's working directory (so the code you run is the code
# you have), without .venv, .git, runs/, wandb/, checkpoints. Token auth: RAY_AUTH_MODE=token is set
# here; the token is read from ~/.ray/auth_token or RAY_AUTH_TOKEN.
set -euo pipefail

address="${RAY_JOB_ADDRESS:-http://127.0.0.1:8265}"
wait_flag="--no-wait"
forward_key=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --address) address="$2"; shift 2 ;;
    --wait) wait_flag=""; shift ;;
    --forward-wandb-key) forward_key=1; shift ;;
    --) shift; break ;;
    *) echo "submit.sh: unknown option $1 (arguments for xdrl go after --)" >&2; exit 2 ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "submit.sh: nothing to run; example: cluster/submit.sh -- tune experiment=cartpole_ppo search=optuna" >&2
  exit 2
fi

export RAY_AUTH_MODE=token
# The runtime environment, built in memory: only non-secret settings unless --forward-wandb-key.
runtime_env="$(FORWARD_KEY="$forward_key" python3 - <<'PY'
import json, os
env = {k: os.environ[k] for k in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") if k in os.environ}
if os.environ.get("FORWARD_KEY") == "1" and os.environ.get("WANDB_API_KEY"):
    env["WANDB_API_KEY"] = os.environ["WANDB_API_KEY"]
excludes = [".git", ".venv", "runs", "wandb", "**/__pycache__", "*.pt", ".pytest_cache", ".ruff_cache", "*.egg-info"]
print(json.dumps({"env_vars": env, "excludes": excludes}))
PY
)"

job_id="xdrl-$(date +%Y%m%d-%H%M%S)-$$"
status=0
ray job submit --address "$address" --submission-id "$job_id" $wait_flag --working-dir . \
  --runtime-env-json "$runtime_env" -- python -m xdrl.cli "$@" || status=$?
cat <<INFO
job: $job_id
  follow:  RAY_AUTH_MODE=token ray job logs --address $address --follow $job_id
  status:  RAY_AUTH_MODE=token ray job status --address $address $job_id
  stop:    RAY_AUTH_MODE=token ray job stop --address $address $job_id
results: in the storage path of the search (search.storage_path), one directory per experiment;
  resume after a driver loss: cluster/submit.sh -- tune --resume <storage path>/<experiment name>
INFO
exit $status

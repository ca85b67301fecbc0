#!/usr/bin/env bash
# Submit an xdrl command to a Ray cluster as a Ray job (wraps `ray job submit`).
#
#   cluster/submit.sh [--address URL] [--wait] [--dry-run] -- tune experiment=cartpole_ppo search=optuna ...
#
#   --address URL   the head's job API (dashboard) address; default $RAY_JOB_ADDRESS or http://127.0.0.1:8265
#                   (with `ray dashboard cluster/aws.yaml` forwarding it, or `kubectl port-forward`)
#   --wait          stream the job's logs and return its exit status (default: submit and return)
#   --dry-run       print the runtime environment and the `ray job submit` command; submit nothing
#
# No secret travels with the job: Ray stores a job's entrypoint and runtime environment with the job
# (`ray job list`, `ray job status --verbose`, the dashboard) and logs them on every node. The nodes hold
# them instead: the W&B key as WANDB_API_KEY in the node's environment or in a file named by
# XDRL_WANDB_API_KEY_FILE (or logger.api_key_file); the study's database password as XDRL_STUDY_PASSWORD
# or in search.study.password_file on the head. Arguments with a URL password are refused.
#
# The current directory is shipped as the job's working directory (so the code you run is the code
# you have), without .venv, .git, runs/, wandb/, checkpoints and secret files (.env, keys, tokens, .netrc,
# *secret*, ...; Ray also leaves out what .gitignore lists). Token auth: RAY_AUTH_MODE=token is set here;
# the token is read from ~/.ray/auth_token or RAY_AUTH_TOKEN.
set -euo pipefail

address="${RAY_JOB_ADDRESS:-http://127.0.0.1:8265}"
wait_flag="--no-wait"
dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --address) address="$2"; shift 2 ;;
    --wait) wait_flag=""; shift ;;
    --dry-run) dry_run=1; shift ;;
    --forward-wandb-key)
      echo "submit.sh: --forward-wandb-key is gone (a job's runtime environment is stored with the job and logged on every node): give the nodes the key, as WANDB_API_KEY in their environment or in a file named by XDRL_WANDB_API_KEY_FILE or logger.api_key_file" >&2
      exit 2 ;;
    --) shift; break ;;
    *) echo "submit.sh: unknown option $1 (arguments for xdrl go after --)" >&2; exit 2 ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "submit.sh: nothing to run; example: cluster/submit.sh -- tune experiment=cartpole_ppo search=optuna" >&2
  exit 2
fi

# The entrypoint is job metadata: no URL with a password in it (the *** of a stored URL is none).
url_password='[A-Za-z][A-Za-z0-9+.-]*://[^:/@[:space:]]*:([^[:space:]]*)@'
for argument in "$@"; do
  if [[ $argument =~ $url_password ]] && [[ -n "${BASH_REMATCH[1]}" && "${BASH_REMATCH[1]}" != '***' ]]; then
    shown="${argument/"${BASH_REMATCH[1]}@"/***@}"
    echo "submit.sh: ${shown} carries a password, and a job's entrypoint is stored with the job (ray job list): leave it out of the URL and set XDRL_STUDY_PASSWORD or search.study.password_file on the head node" >&2
    exit 2
  fi
done

export RAY_AUTH_MODE=token
# The runtime environment, built in memory: non-secret settings only.
runtime_env="$(python3 - <<'PY'
import json, os
env = {k: os.environ[k] for k in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") if k in os.environ}
excludes = [
    ".git", ".venv", "runs", "wandb", "**/__pycache__", "*.pt", ".pytest_cache", ".ruff_cache", "*.egg-info",
    # Secrets (the patterns of .dockerignore and .gitignore, and more): environment files, keys and
    # certificates' private parts, tokens, credential files, anything named *secret*.
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx",
    "id_rsa*", "id_ecdsa*", "id_ed25519*", "auth_token", "*token*.txt", ".netrc", "_netrc", ".pgpass", ".my.cnf",
    ".git-credentials", ".pypirc", "credentials", "credentials.json", "*service-account*.json", "kubeconfig",
    "*.kubeconfig", ".kube", ".aws", ".ssh", ".gnupg", ".docker", ".ray", "*secret*", "!*.py",
]
print(json.dumps({"env_vars": env, "excludes": excludes}))
PY
)"

job_id="xdrl-$(date +%Y%m%d-%H%M%S)-$$"
command=(ray job submit --address "$address" --submission-id "$job_id" $wait_flag --working-dir .
  --runtime-env-json "$runtime_env" -- python -m xdrl.cli "$@")
if [[ $dry_run -eq 1 ]]; then
  echo "runtime env: $runtime_env"
  echo "command: ${command[*]}"
  exit 0
fi
status=0
"${command[@]}" || status=$?
cat <<INFO
job: $job_id
  follow:  RAY_AUTH_MODE=token ray job logs --address $address --follow $job_id
  status:  RAY_AUTH_MODE=token ray job status --address $address $job_id
  stop:    RAY_AUTH_MODE=token ray job stop --address $address $job_id
results: in the storage path of the search (search.storage_path), one directory per experiment;
  resume after a driver loss: cluster/submit.sh -- tune --resume <storage path>/<experiment name>
INFO
exit $status

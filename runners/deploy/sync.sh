#!/usr/bin/env bash
# Sync model artifacts and the runner config to the server, verify them there, ask the runner
# to reload. Credentials are never synced (OANDA.env stays on the server only).
#
#   runners/deploy/sync.sh user@server [models/*.json] [--config runner.yaml]
#
# Needs: ssh/rsync access; on the server the venv at /opt/sep/venv and the status token in
# /opt/sep/status.env (systemd) or /opt/sep/.env (Docker compose), as SEP_STATUS_TOKEN=...
# The status API is on the server's 127.0.0.1:8080 (the runner itself, or the container's
# port published on the host's loopback) and is reached through ssh, never exposed.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 user@server ARTIFACT.json [ARTIFACT.json ...] [--config runner.yaml]" >&2
  exit 2
fi
server=$1; shift
models=(); config=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
for f in "${models[@]}" ${config:+"$config"}; do
  case $(basename "$f") in
    *.env|OANDA*|*credential*|*secret*) echo "refusing to sync $f: credentials stay on the server" >&2; exit 2 ;;
  esac
  grep -qiE 'OANDA_API_KEY|ACCESS_TOKEN' "$f" && { echo "refusing: $f mentions a token" >&2; exit 2; }
done
# verify locally first (checksum, causal alignment)
for m in "${models[@]}"; do
  python -c "import sys; from sep_research.training.artifact import verify_artifact as v; r=v(sys.argv[1]); print(sys.argv[1], 'ok' if r.ok else r.problems); sys.exit(0 if r.ok else 1)" "$m"
done
# upload to a staging folder, verify there, then move into place atomically
ssh "$server" 'mkdir -p /opt/sep/models/.incoming'
rsync -av --checksum "${models[@]}" "$server:/opt/sep/models/.incoming/"
[[ -n $config ]] && rsync -av --checksum "$config" "$server:/opt/sep/config/runner.yaml.new"
ssh "$server" bash -s <<'REMOTE'
set -euo pipefail
cd /opt/sep/models/.incoming
for m in *.json; do
  /opt/sep/venv/bin/python -c "import sys; from sep_research.training.artifact import verify_artifact as v; r=v(sys.argv[1]); sys.exit(0 if r.ok else f'{sys.argv[1]}: {r.problems}')" "$m"
  mv -f "$m" "/opt/sep/models/$m"
done
if [[ -f /opt/sep/config/runner.yaml.new ]]; then
  /opt/sep/venv/bin/python -c "from sep_research.live.config import load_config; load_config('/opt/sep/config/runner.yaml.new')"
  mv -f /opt/sep/config/runner.yaml.new /opt/sep/config/runner.yaml
  echo "config changed: restart the runner to apply it (sudo systemctl restart sep-runner)"
fi
# ask the runner to verify and swap the model (the token is read on the server only, and
# handed to curl on its standard input, never on a command line)
SEP_STATUS_TOKEN=""
for f in /opt/sep/status.env /opt/sep/.env; do
  if [[ -z $SEP_STATUS_TOKEN && -r $f ]]; then
    SEP_STATUS_TOKEN=$(sed -n 's/^SEP_STATUS_TOKEN=//p' "$f" | tail -n 1)
  fi
done
if [[ -z $SEP_STATUS_TOKEN ]]; then
  echo "no SEP_STATUS_TOKEN in /opt/sep/status.env or /opt/sep/.env: reload skipped" >&2
  exit 1
fi
printf 'header = "Authorization: Bearer %s"\n' "$SEP_STATUS_TOKEN" |
  curl -fsS --max-time 30 -K - -X POST http://127.0.0.1:8080/api/reload
echo
REMOTE

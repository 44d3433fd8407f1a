#!/usr/bin/env bash
# Starts the web app, one Celery worker (default and training queues) and beat on the embedded defaults.
# Ctrl-C (or any of them exiting) stops every process this script started.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8000}
mkdir -p var/log
pids=()

stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping RewardLab (web, worker, beat)…"
  kill -TERM "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  exit 0
}
trap stop INT TERM EXIT

"$PY" manage.py runserver "127.0.0.1:$PORT" --noreload &
pids+=($!)
"$PY" -m celery -A rewardlab worker -Q default,training --concurrency 1 --loglevel INFO \
  --hostname "demo@%h" >var/log/worker.log 2>&1 &
pids+=($!)
"$PY" -m celery -A rewardlab beat --loglevel INFO >var/log/beat.log 2>&1 &
pids+=($!)

sleep 2
cat <<MSG

  RewardLab is running at http://127.0.0.1:$PORT/
  Sign in as labeler / labeler-demo, researcher / researcher-demo or admin / admin-demo.
  Worker and beat logs: var/log/worker.log, var/log/beat.log.   Ctrl-C stops everything.

MSG
# Return as soon as any one process exits; the EXIT trap then stops the others.
wait -n "${pids[@]}"

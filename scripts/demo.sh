#!/usr/bin/env bash
# Starts the web app, a Celery worker for the default and training queues, one for live chat replies (inference,
# so a chat is answered while a model trains) and beat, on the embedded defaults.
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
  echo "Stopping RewardLab (web, workers, beat)…"
  kill -TERM "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  exit 0
}
trap stop INT TERM EXIT

"$PY" manage.py runserver "127.0.0.1:$PORT" --noreload &
pids+=($!)
"$PY" -m celery -A rewardlab.celery worker -Q default,training --concurrency 1 --loglevel INFO \
  --hostname "demo@%h" >var/log/worker.log 2>&1 &
pids+=($!)
"$PY" -m celery -A rewardlab.celery worker -Q inference --concurrency 1 --loglevel INFO \
  --hostname "inference@%h" >var/log/inference.log 2>&1 &
pids+=($!)
"$PY" -m celery -A rewardlab.celery beat --loglevel INFO >var/log/beat.log 2>&1 &
pids+=($!)

sleep 2
cat <<MSG

  RewardLab is running at http://127.0.0.1:$PORT/
  Sign in as labeler / labeler-demo, researcher / researcher-demo or admin / admin-demo.
  Logs: var/log/worker.log, var/log/inference.log (chat replies), var/log/beat.log.   Ctrl-C stops everything.

MSG
# Return as soon as any one process exits; the EXIT trap then stops the others.
wait -n "${pids[@]}"

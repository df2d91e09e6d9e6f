#!/bin/bash
# The rehearsal of docs/guide/migration.md ("A whole migration"), run exactly as printed against two local fake APIs
# (one stands for the real API): prints "$ command", its output (stderr merged) and its exit code.
# Usage: make .venv/.installed && docs/rehearsal.sh > docs/rehearsal-transcript.txt  (needs jq and curl;
# ports, pids, times and the temp directory differ from run to run, and plan lines come in completion order)
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/migration.XXXX); cd $W
export PATH=$REPO/.venv/bin:$PATH XDG_CACHE_HOME=$W/.cache
run() { echo "\$ $*"; bash -c "$*" 2>&1; echo "[exit $?]"; }
export CLOUDFLARE_API_TOKEN=demo-token CLOUDFLARE_ACCOUNT_ID=demo-account BATCHER_APP_ID=demo-app
cp $REPO/inputs/seed-meetings.jsonl .
batcher fake-api --seed seed-meetings.jsonl --port 0 --port-file prod.port >prod.log 2>&1 & echo $! > prod.pid
while [ ! -s prod.port ]; do sleep 0.2; done
PROD=http://127.0.0.1:$(cat prod.port)/client/v4
echo "# PROD=$PROD"
export PROD
run 'batcher export --base-url $PROD --full --out backup.jsonl'
run 'head -c 300 backup.jsonl; echo ...'
batcher fake-api --seed backup.jsonl --port 0 --port-file rehearsal.port >rehearsal.log 2>&1 & echo $! > rehearsal.pid
while [ ! -s rehearsal.port ]; do sleep 0.2; done
REHEARSAL=http://127.0.0.1:$(cat rehearsal.port)/client/v4
echo "# REHEARSAL=$REHEARSAL"
export REHEARSAL
run "batcher export --base-url \$PROD --fields title | jq -c 'select(.title | test(\"#1\")) | {meeting_id, account_id}' > ids.jsonl; wc -l < ids.jsonl"
run 'batcher plan ids.jsonl --base-url $REHEARSAL --set ai_config.transcription.language=fr --set summarize_on_end=true --rate 10/1 --out plan.jsonl'
run 'jq -c "{row, action, changes, error}" plan.jsonl | head -3'
run 'batcher run ids.jsonl --base-url $REHEARSAL --state rehearsal.db --report rehearsal.failures.jsonl --set ai_config.transcription.language=fr --set summarize_on_end=true --rate 10/1'
run 'batcher status --state rehearsal.db'
run 'batcher status --state rehearsal.db --json | jq -c "{total, succeeded, failed, requests, paused_until, failures_by_error}"'
run 'batcher rollback --state rehearsal.db --base-url $PROD'
run 'batcher rollback --state rehearsal.db'
run 'curl -s -X POST ${REHEARSAL%/client/v4}/__faults -d '"'"'[{"method": "PUT", "status": 429, "retry_after": 20}]'"'"''
echo "\$ batcher run ids.jsonl --base-url \$REHEARSAL --state paused.db --report paused.failures.jsonl --set ai_config.transcription.language=fr --rate 10/1 -q &"
batcher run ids.jsonl --base-url $REHEARSAL --state paused.db --report paused.failures.jsonl --set ai_config.transcription.language=fr --rate 10/1 -q > paused.out 2>&1 & JOB=$!
sleep 4
run 'batcher status --state paused.db'
run 'batcher status --state paused.db --json | jq -c "{total, succeeded, pending, requests, retries, paused_until, running}"'
wait $JOB; echo "[the job: exit $?]"; cat paused.out
run 'batcher status --state paused.db --json | jq -c "{total, succeeded, pending, requests, retries, paused_until, running}"'
run 'batcher run ids.jsonl --base-url $PROD --state rehearsal.db --set ai_config.transcription.language=fr --set summarize_on_end=true'
run 'batcher run ids.jsonl --base-url $PROD --set ai_config.transcription.language=fr --set summarize_on_end=true'
kill $(cat prod.pid) $(cat rehearsal.pid)
echo "# workdir $W"

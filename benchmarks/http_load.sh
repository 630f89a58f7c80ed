#!/bin/sh
# Load test of the search API: the demo (about 20,000 passages) served by gunicorn on loopback,
# under wrk (Debian package wrk). Only ever targets 127.0.0.1.
#
#   benchmarks/http_load.sh [DURATION] [CONNECTIONS] [WORKERS]     # defaults: 30s 32 4
#
# Needs: pip install -e '.[dev,serve]'; apt-get install wrk. Loads the demo first if it is not
# loaded yet (python manage.py demo --no-serve), then prints wrk's report and one summary line:
# requests/s, p50/p90/p99, non-2xx responses (the target: 0).
set -eu
cd "$(dirname "$0")/.."
DURATION=${1:-30s}
CONNECTIONS=${2:-32}
WORKERS=${3:-4}
PORT=${PORT:-8765}
PYTHON=${PYTHON:-python}

command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
"$PYTHON" -c "import gunicorn" 2>/dev/null || {
  echo "gunicorn is not installed: pip install -e '.[serve]'" >&2; exit 1; }

"$PYTHON" manage.py demo --no-serve --verbosity 0 >/dev/null

# DEBUG off, as in production: no query log growing in each worker.
DJANGO_DEBUG=0 "$PYTHON" -m gunicorn project.wsgi:application \
  --bind "127.0.0.1:$PORT" --workers "$WORKERS" --worker-class sync \
  --backlog 256 --log-level warning &
GUNICORN=$!
trap 'kill "$GUNICORN" 2>/dev/null; wait "$GUNICORN" 2>/dev/null || true' EXIT INT TERM

URL="http://127.0.0.1:$PORT/search/api/"
for _ in $(seq 50); do
  curl -fsS -o /dev/null "$URL?q=warm+up" 2>/dev/null && break
  sleep 0.2
done
# Warm each worker's connection and caches before measuring.
wrk -t2 -c"$WORKERS" -d3s -s benchmarks/http_queries.lua "$URL" >/dev/null

echo "wrk -t2 -c$CONNECTIONS -d$DURATION against $URL (gunicorn, $WORKERS sync workers):"
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s --latency -s benchmarks/http_queries.lua "$URL"

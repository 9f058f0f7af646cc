#!/usr/bin/env bash
# Browser tests of the pages (GET / and GET /volunteer): Debian's headless
# Chromium driven by playwright-core (tests/browser), against the real
# binary on a fresh SQLite file and the embedded broker, on free ports.
# Web Push endpoints on 127.0.0.1 are allowed: push.test.js runs its own
# push service there.
#
#   bash .ci/browser.sh                      # run the test
#   UPDATE_SCREENSHOTS=1 bash .ci/browser.sh # …and rewrite docs/screenshots/*.png
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian's chromium"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

echo "== npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

echo "== cargo build"
cargo build --quiet --bin onepress

TMP=$(mktemp -d)
SERVICE_PID=""
cleanup() {
  if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVICE_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$SERVICE_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}
HTTP_PORT=$(free_port)
MQTT_PORT=$(free_port)
while [ "$MQTT_PORT" = "$HTTP_PORT" ]; do MQTT_PORT=$(free_port); done
TOKEN="browser-test-$(node -e 'console.log(require("crypto").randomBytes(16).toString("hex"))')"
# The test's own MQTT client (watching offers, pressing for bands) logs in
# as the admin.
ADMIN="browser-admin:$(node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))')"

echo "== starting onepress (HTTP 127.0.0.1:$HTTP_PORT, MQTT 127.0.0.1:$MQTT_PORT)"
# Run from the temp dir, so that no config/onepress.toml of the checkout applies.
(
  cd "$TMP"
  exec env \
    ONEPRESS_HTTP_ADDR="127.0.0.1:$HTTP_PORT" \
    ONEPRESS_EMBEDDED_MQTT_ADDR="127.0.0.1:$MQTT_PORT" \
    ONEPRESS_MQTT_URL=embedded \
    ONEPRESS_MQTT_CLIENT_ID="onepress-browser-test" \
    ONEPRESS_DATABASE_URL="sqlite://$TMP/onepress.db" \
    ONEPRESS_OPERATOR_TOKEN="$TOKEN" \
    ONEPRESS_MQTT_ADMIN="$ADMIN" \
    ONEPRESS_OFFER_TIMEOUT=2m \
    ONEPRESS_PUSH_ALLOW_LOOPBACK=true \
    RUST_LOG="${RUST_LOG:-info}" \
    "$ROOT/target/debug/onepress" serve
) >"$TMP/service.log" 2>&1 &
SERVICE_PID=$!

ready=""
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$SERVICE_PID" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "error: onepress never became ready; its log:" >&2
  tail -n 50 "$TMP/service.log" >&2
  exit 1
fi

SHOTS="$TMP/screenshots"
if [ "${UPDATE_SCREENSHOTS:-}" = "1" ]; then
  SHOTS="$ROOT/docs/screenshots"
fi

# One file at a time: they share the service (an alert of one would show on
# the dashboard of the other).
echo "== node --test (tests/browser)"
status=0
(
  cd tests/browser
  ONEPRESS_BASE="http://127.0.0.1:$HTTP_PORT" \
    ONEPRESS_OPERATOR_TOKEN="$TOKEN" \
    ONEPRESS_MQTT_PORT="$MQTT_PORT" \
    ONEPRESS_MQTT_ADMIN="$ADMIN" \
    CHROMIUM=/usr/bin/chromium \
    SCREENSHOT_DIR="$SHOTS" \
    node --test --test-concurrency=1 --test-reporter=spec
) || status=$?

if [ "$status" -ne 0 ]; then
  echo "error: the browser test failed; the service's log:" >&2
  tail -n 80 "$TMP/service.log" >&2
  exit "$status"
fi
if [ "${UPDATE_SCREENSHOTS:-}" = "1" ]; then
  echo "screenshots written to docs/screenshots/"
fi

#!/usr/bin/env bash
# The service against its own OpenAPI document, with schemathesis.
#
# Starts target/debug/onepress with the embedded broker on free ports and a
# temporary SQLite file, seeds two seniors, two bands, two volunteers (one
# with a token, on duty) and three alerts (one resolved, one offered, one
# waiting) so that ids in paths and bodies also hit real resources, then
# runs schemathesis against /openapi.json: no 5xx, every answer as
# documented (status code, content type, headers, body), 401 without a
# valid token, 405 for undocumented methods, every request that breaks the
# document refused (negative_data_rejection) and every one that keeps to it
# taken (positive_data_acceptance: 2xx, or 404/409 for what does not
# exist or cannot be done now), so the document and the validators say the
# same. Volunteer-only operations run
# with the volunteer's token, the others with the operator's (the broker
# hooks too: the service runs with the operator token as its broker hook
# token, so that the hooks answer rather than 404). When
# ONEPRESS_TEST_DATABASE_URL names a PostgreSQL server (as in .ci/run), the
# same is done again on a fresh database there. The live stream
# (/v1/alerts/stream) never ends by itself and is left out.
#
# Exits non-zero on any failure. About 30 s per backend on 2 cores.
# Knobs: SCHEMATHESIS_MAX_EXAMPLES, SCHEMATHESIS_SEED, SCHEMATHESIS_CHECKS,
# SCHEMATHESIS_REPORT_DIR (writes NDJSON reports there).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-25}
SEED=${SCHEMATHESIS_SEED:-20261125}
CHECKS=${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance,missing_required_header,allow_header_conformance,use_after_free,ensure_resource_availability,ignored_auth,unsupported_method}
POSTGRES_URL=${ONEPRESS_TEST_DATABASE_URL:-}

echo "== schemathesis $SCHEMATHESIS_VERSION"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  "schemathesis==$SCHEMATHESIS_VERSION"
# Through the interpreter pip installed into (its console script may not be
# on PATH, e.g. under pyenv before a rehash).
schemathesis() {
  python3 -c 'import sys; from schemathesis.cli import schemathesis; sys.argv[0] = "schemathesis"; sys.exit(schemathesis())' "$@"
}
schemathesis --version
cargo build --quiet --bin onepress
BIN="$ROOT/target/debug/onepress"

# Only our settings reach the service: no ONEPRESS_* of the caller's, and no
# config file (it runs in a temporary directory).
for v in $(compgen -e | grep '^ONEPRESS_' || true); do unset "$v"; done

WORK=$(mktemp -d)
PID=
DROP_DB=
stop_service() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  PID=
}
cleanup() {
  stop_service
  if [ -n "$DROP_DB" ]; then
    psql "$POSTGRES_URL" -qtAc "drop database if exists $DROP_DB with (force)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A band press over MQTT: a minimal MQTT 3.1.1 client (CONNECT, PUBLISH at
# QoS 1, then the PUBACK, which comes once the press is stored).
press() { # mqtt_port device event_id admin_login
  python3 - "$@" <<'EOF'
import json, socket, sys

port, device, event_id, admin = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
user, password = admin.split(":", 1)

def packet(kind, body):
    n, length = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        length += bytes([byte | (128 if n else 0)])
        if not n:
            return bytes([kind]) + length + body

def text(value):
    b = value.encode()
    return len(b).to_bytes(2, "big") + b

def read(sock):
    kind = sock.recv(1)[0]
    mult, size = 1, 0
    while True:
        b = sock.recv(1)[0]
        size += (b & 127) * mult
        mult *= 128
        if not b & 128:
            break
    body = b""
    while len(body) < size:
        body += sock.recv(size - len(body))
    return kind, body

sock = socket.create_connection(("127.0.0.1", port), timeout=10)
# Flags 0xC2: user name, password, clean session (the admin login).
sock.sendall(packet(0x10, text("MQTT") + bytes([4, 0xC2]) + (30).to_bytes(2, "big")
                    + text(f"seed-{event_id}") + text(user) + text(password)))
assert read(sock)[0] == 0x20, "no CONNACK"
payload = json.dumps({"event_id": event_id, "kind": "sos", "lat": 30.5101, "lon": 120.6805, "battery": 80})
sock.sendall(packet(0x32, text(f"wristbands/{device}/alert") + (1).to_bytes(2, "big") + payload.encode()))
assert read(sock)[0] == 0x40, "no PUBACK"
sock.sendall(packet(0xE0, b""))
sock.close()
EOF
}

failed=0

check_backend() { # label database_url
  local label=$1 database_url=$2
  local http_port mqtt_port operator_token api log="$WORK/$label.log"
  http_port=$(free_port)
  mqtt_port=$(free_port)
  while [ "$mqtt_port" = "$http_port" ]; do mqtt_port=$(free_port); done
  operator_token="schemathesis-operator-$http_port-$$"
  admin_login="schemathesis-admin:$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
  api="http://127.0.0.1:$http_port"

  echo "== $label: starting the service on $api"
  (
    cd "$WORK"
    ONEPRESS_HTTP_ADDR="127.0.0.1:$http_port" \
    ONEPRESS_MQTT_URL=embedded \
    ONEPRESS_EMBEDDED_MQTT_ADDR="127.0.0.1:$mqtt_port" \
    ONEPRESS_DATABASE_URL="$database_url" \
    ONEPRESS_OPERATOR_TOKEN="$operator_token" \
    ONEPRESS_MQTT_ADMIN="$admin_login" \
    ONEPRESS_BROKER_HOOK_TOKEN="$operator_token" \
    RUST_LOG="${RUST_LOG:-warn}" \
    exec "$BIN" serve
  ) >"$log" 2>&1 &
  PID=$!
  local ready=
  for _ in $(seq 1 120); do
    if curl -fsS "$api/readyz" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.25
  done
  if [ -z "$ready" ]; then
    echo "error: the service did not get ready on $api" >&2
    tail -n 50 "$log" >&2
    exit 1
  fi

  # ----- seed -------------------------------------------------------------
  local op="Authorization: Bearer $operator_token"
  call() { # method path [json] [auth header]
    curl -fsS -X "$1" "$api$2" -H "${4:-$op}" -H 'content-type: application/json' ${3:+-d "$3"}
  }
  alert_ids() { # the ids of all alerts, newest first
    call GET '/v1/alerts?state=all' |
      python3 -c 'import json, sys; print(" ".join(a["id"] for a in json.load(sys.stdin)))'
  }
  newest_alert() { # n: waits until there are n alerts, prints the newest
    local ids=
    for _ in $(seq 1 40); do
      ids=$(alert_ids)
      if [ "$(wc -w <<<"$ids")" -ge "$1" ]; then echo "${ids%% *}"; return 0; fi
      sleep 0.25
    done
    echo "error: expected $1 alerts, got: $ids" >&2
    tail -n 50 "$log" >&2
    return 1
  }
  call PUT /v1/seniors/s-17 '{"name":"Jiang Lan","address":"3 Lotus Lane","home":{"lat":30.5101,"lon":120.6805},"notes":"lives alone","contacts":[{"name":"Jiang Wei","phone":"138-0000-0017"}]}' >/dev/null
  call PUT /v1/seniors/s-18 '{"name":"Zhou Min"}' >/dev/null
  call PUT /v1/devices/band-17 '{"senior_id":"s-17"}' >/dev/null
  call PUT /v1/devices/band-18 '{"senior_id":"s-18"}' >/dev/null
  call PUT /v1/volunteers/v-wang '{"name":"Wang Fang","phone":"138-0000-0001","skills":["first_aid"]}' >/dev/null
  call PUT /v1/volunteers/v-li '{"name":"Li Wei"}' >/dev/null
  local volunteer_token vol
  volunteer_token=$(call POST /v1/volunteers/v-wang/token |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
  vol="Authorization: Bearer $volunteer_token"
  call PUT /v1/me/duty '{"on_duty":true}' "$vol" >/dev/null
  call PUT /v1/me/location '{"lat":30.5111,"lon":120.6805}' "$vol" >/dev/null
  # The first alert goes all the way (offered to v-wang, accepted, on scene,
  # resolved); the second is left offered to v-wang; the third waits for
  # someone (escalated).
  local alert_1 alert_2 alert_3
  press "$mqtt_port" band-17 e-1 "$admin_login"
  alert_1=$(newest_alert 1)
  call POST "/v1/alerts/$alert_1/accept" '' "$vol" >/dev/null
  call POST "/v1/alerts/$alert_1/arrive" '' "$vol" >/dev/null
  call POST "/v1/alerts/$alert_1/resolve" '{"outcome":"helped","note":"helped her up"}' "$vol" >/dev/null
  press "$mqtt_port" band-18 e-2 "$admin_login"
  alert_2=$(newest_alert 2)
  press "$mqtt_port" band-17 e-3 "$admin_login"
  alert_3=$(newest_alert 3)
  echo "seeded: seniors s-17 s-18, bands band-17 band-18, volunteers v-wang v-li, alerts $alert_1 $alert_2 $alert_3"

  # ----- schemathesis -----------------------------------------------------
  # Ids in paths and bodies are drawn mostly from what was seeded, by kind,
  # and otherwise generated from the schema.
  local config="$WORK/$label.toml"
  cat >"$config" <<EOF
[dictionaries.seniors]
values = ["s-17", "s-18"]
[dictionaries.devices]
values = ["band-17", "band-18"]
[dictionaries.volunteers]
values = ["v-wang", "v-li"]
[dictionaries.alerts]
values = ["$alert_1", "$alert_2", "$alert_3"]

[[operations]]
include-path-regex = "^/v1/seniors/"
parameters = { "path.id" = { dictionary = "seniors", probability = 0.7 } }

[[operations]]
include-path-regex = "^/v1/devices/"
parameters = { "path.device_id" = { dictionary = "devices", probability = 0.7 }, "body.senior_id" = { dictionary = "seniors", probability = 0.7 } }

[[operations]]
include-path-regex = "^/v1/volunteers/"
parameters = { "path.id" = { dictionary = "volunteers", probability = 0.7 } }

[[operations]]
include-path-regex = "^/v1/alerts/"
parameters = { "path.id" = { dictionary = "alerts", probability = 0.7 }, "body.volunteer_id" = { dictionary = "volunteers", probability = 0.7 } }

# What OpenAPI cannot say, and only that:
# - A body over 64 KiB is refused unread with a 413 (the description and
#   every operation with a body say so), but JSON Schema cannot bound the
#   size of a whole body: a topic of 65,535 characters keeps to the
#   schema and is still too large. 413 counts as a refusal, and as an
#   answer to valid data, on top of schemathesis's defaults.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
EOF
  run() { # role token checks filters…
    local role=$1 token=$2 checks=$3
    shift 3
    echo "== $label: schemathesis as $role against $api/openapi.json, at most $MAX_EXAMPLES examples per operation"
    (
      cd "$WORK"
      schemathesis --config-file "$config" run "$api/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks "$checks" \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$SEED" \
        --request-timeout 10 \
        --workers 1 \
        --no-color \
        --output-truncate false \
        ${SCHEMATHESIS_REPORT_DIR:+--report ndjson --report-dir "$SCHEMATHESIS_REPORT_DIR/$label-$role"} \
        "$@"
    ) || { failed=1; echo "error: $label: schemathesis as $role found failures" >&2; }
  }
  # What a volunteer does comes first, with their token: the operator run
  # may issue v-wang a new token, which ends this one.
  local volunteer_only=(me set_duty set_location accept decline arrive)
  # shellcheck disable=SC2046
  run volunteer "$volunteer_token" "$CHECKS" \
    $(printf -- '--include-operation-id %s ' "${volunteer_only[@]}" get_alert resolve)
  # shellcheck disable=SC2046
  run operator "$operator_token" "$CHECKS" \
    $(printf -- '--exclude-operation-id %s ' "${volunteer_only[@]}") \
    --exclude-operation-id sla \
    --exclude-path-regex '^/v1/alerts/stream$'
  # GET /v1/stats/sla on its own, without positive_data_acceptance: "from"
  # must be before "to" (400 otherwise), a rule between two parameters that
  # OpenAPI cannot state, so schemathesis takes from = to as valid. (A
  # check named in --checks cannot be turned off for one operation in the
  # config file: the command line wins.)
  local sla_checks
  sla_checks=$(tr , '\n' <<<"$CHECKS" | grep -vx positive_data_acceptance | paste -sd, -)
  run operator-sla "$operator_token" "${sla_checks:-not_a_server_error}" --include-operation-id sla

  if ! kill -0 "$PID" 2>/dev/null; then
    echo "error: $label: the service died" >&2
    failed=1
  fi
  if [ "$failed" != 0 ]; then
    echo "== $label: the service's last log lines" >&2
    tail -n 30 "$log" >&2
  fi
  stop_service
}

check_backend sqlite "sqlite://$WORK/onepress.db"

if [ -n "$POSTGRES_URL" ]; then
  DROP_DB="onepress_schemathesis_$$"
  psql "$POSTGRES_URL" -qtAc "create database $DROP_DB" >/dev/null
  check_backend postgres "$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$POSTGRES_URL" "$DROP_DB")"
else
  echo "== postgres: skipped (ONEPRESS_TEST_DATABASE_URL is not set)"
fi

if [ "$failed" != 0 ]; then
  echo "error: schemathesis found failures" >&2
  exit 1
fi
echo "schemathesis: no failures"

#!/usr/bin/env bash
# Runs docker-compose.yml's topology without a container runtime: a
# throwaway PostgreSQL cluster, three `kedai serve` replicas configured as
# the compose file configures them (one store.url, one credentials key, an
# instance name each), and nginx with deploy/nginx.conf in front (its
# upstream names mapped to loopback addresses, its listen port moved).
# Stand-in models, so it needs no model bundle. Then it checks through
# nginx: every replica ready, a burst of messages stored once each (sent
# twice), and the requests spread over all three replicas.
#
#   cargo build && deploy/smoke-without-docker.sh target/debug/kedai
set -euo pipefail
cd "$(dirname "$0")/.."
kedai="$(realpath "${1:-target/debug/kedai}")"
command -v nginx >/dev/null || { echo "nginx is required (apt-get install nginx-light)"; exit 1; }
work="$(mktemp -d /tmp/kedai-smoke.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    [ -n "${KEDAI_TEST_POSTGRES_DIR:-}" ] && .ci/postgres stop "$KEDAI_TEST_POSTGRES_DIR"
    rm -rf "$work"
}
trap cleanup EXIT
eval "$(.ci/postgres start)"
export KEDAI__STORE__URL="$KEDAI_TEST_POSTGRES_URL"
export KEDAI_CREDENTIALS_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export KEDAI__MODELS__FETCH_ON_START=false KEDAI__MODELS__EMBEDDING=stand-in:hashing \
    KEDAI__MODELS__CHAT=stand-in:echo KEDAI__MODELS__DIR="$work/models" \
    KEDAI__LOG__FILTER=warn
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$kedai" migrate >/dev/null
for i in 1 2 3; do
    KEDAI__SERVER__INSTANCE="kedai-$i" "$kedai" serve --demo --data-dir "$work/data-$i" \
        --listen "127.0.0.$((i + 1)):$port" >"$work/kedai-$i.out" 2>"$work/kedai-$i.log" &
    pids+=($!)
done
python3 - "$port" "$work" deploy/nginx.conf >"$work/nginx.conf" <<'PY'
import re, sys
port, work = sys.argv[1], sys.argv[2]
conf = open(sys.argv[3]).read()
# nginx itself listens on 127.0.0.1; the replicas sit on .2, .3 and .4.
conf = re.sub(r"kedai-([123]):8080", lambda m: f"127.0.0.{int(m.group(1)) + 1}:{port}", conf)
conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
conf = conf.replace("events {}", f"pid {work}/nginx.pid;\nerror_log {work}/nginx.err;\nevents {{}}")
conf = conf.replace("http {", "http {\n    log_format smoke '$status $upstream_addr';\n"
                    f"    access_log {work}/access.log smoke;\n"
                    f"    client_body_temp_path {work}/body;\n    proxy_temp_path {work}/proxy;", 1)
print(conf)
PY
nginx -t -c "$work/nginx.conf" -p "$work" 2>&1 | tail -1
nginx -c "$work/nginx.conf" -p "$work"
python3 - "$port" "$work" <<'PY'
import json, sys, time, urllib.request, collections
port, work = sys.argv[1], sys.argv[2]
front = f"http://127.0.0.1:{port}"
def call(url, body=None, token=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                 method="POST" if body else "GET")
    req.add_header("Content-Type", "application/json")
    if token: req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r: return r.status, r.read()
    except urllib.error.HTTPError as e: return e.code, e.read()
    except OSError: return None, b""
deadline = time.time() + 120
for i in (2, 3, 4):
    while call(f"http://127.0.0.{i}:{port}/readyz")[0] != 200:
        assert time.time() < deadline, f"replica on 127.0.0.{i} not ready"
        time.sleep(0.5)
import os
# The demo tenant is created once, by whichever replica got there first.
token = next(open(f"{work}/data-{i}/demo-token").read().strip() for i in (1, 2, 3)
             if os.path.exists(f"{work}/data-{i}/demo-token"))
ids = set()
for n in range(60):
    body = {"shop": "demo-web", "external_id": f"smoke-{n}", "buyer": {"id": f"b{n % 7}"},
            "text": f"hello {n}"}
    for _ in range(2):  # every message delivered twice
        status, raw = call(f"{front}/api/v1/messages", body, token)
        assert status in (200, 202), (status, raw)
        ids.add(json.loads(raw)["message_id"])
assert len(ids) == 60, f"{len(ids)} distinct messages stored for 60 sent twice"
status, raw = call(f"{front}/api/v1/conversations?limit=100", token=token)
assert status == 200, (status, raw)
upstreams = collections.Counter(line.split()[-1] for line in open(f"{work}/access.log"))
assert len(upstreams) == 3, upstreams
print(json.dumps({"messages_sent_twice": 60, "stored_once_each": len(ids),
                  "requests_per_replica": dict(upstreams)}))
PY
echo "ok: the compose topology serves through nginx"

#!/usr/bin/env bash
# cordon's main job on one offline example: a local origin, cordon in front of it, one
# allowed and two denied requests, then the audit trail and its verification.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --locked
bin="${CARGO_TARGET_DIR:-target}/debug/cordon"
work=$(mktemp -d)
cleanup() { kill "${origin_pid:-}" "${cordon_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

# A local origin on loopback, standing in for an API the agent may use.
mkdir -p "$work/www/v1" && echo '{"models":["demo"]}' > "$work/www/v1/models"
python3 -m http.server 18181 --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
origin_pid=$!

cat > "$work/cordon.yaml" <<YAML
version: 1
agent: { name: demo-agent }
listen: { proxy: "127.0.0.1:0", admin: "127.0.0.1:0" }
egress:
  - host: "127.0.0.1"             # loopback is refused unless listed in allow_ips
    ports: [18181]
    allow_ips: [127.0.0.1/32]
    rules: [ { methods: [GET], paths: ["/v1/**"] } ]
deny:
  - { host: "127.0.0.1", paths: ["/v1/admin/**"] }
audit: { path: "$work/audit.jsonl", fsync: every }
YAML
"$bin" check --config "$work/cordon.yaml" | sed 's/^/  check: /'
"$bin" serve --config "$work/cordon.yaml" 2> "$work/cordon.log" &
cordon_pid=$!
for _ in $(seq 100); do grep -q 'listener=proxy' "$work/cordon.log" 2>/dev/null && break; sleep 0.1; done
proxy=$(grep -o 'listener=proxy addr=[0-9.:]*' "$work/cordon.log" | head -1 | sed 's/.*addr=//')
sleep 0.5
export http_proxy="http://$proxy"

echo; echo "== allowed: GET /v1/models"
curl -sS -i "http://127.0.0.1:18181/v1/models"
echo; echo "== denied: a host nobody listed (cordon answers; nothing is resolved or sent)"
curl -sS -i "http://example.com/"
echo; echo "== denied: a path inside the deny boundary"
curl -sS -i "http://127.0.0.1:18181/v1/admin/keys"

kill -TERM "$cordon_pid"; wait "$cordon_pid" || true; cordon_pid=
echo; echo "== audit trail ($work/audit.jsonl)"
cat "$work/audit.jsonl"
echo; "$bin" audit verify "$work/audit.jsonl"

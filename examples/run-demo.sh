#!/usr/bin/env bash
# `cordon run` on one offline example: observe a small session with no policy, read the
# inventory, turn the trail into a policy, then run the same session under it (enforced)
# and see a request outside it refused.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --locked
bin="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/cordon"
work=$(mktemp -d)
cleanup() { kill "${origin_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

# A local origin on loopback, standing in for an API the agent uses.
mkdir -p "$work/www/v1" && echo '{"models":["demo"]}' > "$work/www/v1/models"
echo '{"ok":true}' > "$work/www/v1/health"
python3 -m http.server 18182 --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
origin_pid=$!
sleep 0.5

# The "agent": two requests to the API.
session='curl -sS http://localhost:18182/v1/models; curl -sS http://localhost:18182/v1/health'

echo "== 1. observe: no policy, everything allowed and recorded"
"$bin" run --audit "$work/observed.jsonl" -- sh -c "$session"

echo; echo "== 2. suggest: the smallest policy under which that session passes"
"$bin" policy suggest --from "$work/observed.jsonl" --out "$work/cordon.yaml"
sed -i "s|cordon-audit.jsonl|$work/enforced.jsonl|" "$work/cordon.yaml"
cat "$work/cordon.yaml"

echo; echo "== 3. enforce: the same session passes; anything else is refused"
"$bin" run --config "$work/cordon.yaml" -- sh -c "$session; curl -sS -i http://localhost:18182/v1/admin"
echo; "$bin" audit verify "$work/enforced.jsonl"

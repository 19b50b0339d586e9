#!/usr/bin/env bash
# Load through cordon against a local nginx origin, and the same load direct, in one run.
#
#   benches/load.sh                      # 32 connections, 5 s per run, 3 rounds
#   DUR=10 ROUNDS=5 CONNS=64 RATE=2000 benches/load.sh
#
# Needs oha (cargo install --locked oha, or ../shared/bench/setup.sh), nginx and openssl.
# Everything listens on 127.0.0.1 only. Prints requests/s, p50, p99 (and what cordon adds),
# cordon's CPU seconds per 10k requests, its idle and loaded RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-5}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-32}; RATE=${RATE:-5000}
PLAIN_PORT=${PLAIN_PORT:-28080}; TLS_PORT=${TLS_PORT:-28443}; ITLS_PORT=${ITLS_PORT:-28444}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cache/cordon-bench-tools/bin/oha")}
for tool in "$OHA" nginx openssl python3; do
  command -v "$tool" >/dev/null || { echo "load.sh: $tool not found (see the header)" >&2; exit 2; }
done

cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/cordon"
work=$(mktemp -d "${TMPDIR:-/tmp}/cordon-load.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Origin: nginx, 1 KiB file, plain and TLS (self-signed for 127.0.0.1).
chmod 755 "$work"  # nginx workers run as an unprivileged user
mkdir -p "$work/www" "$work/logs"
head -c 1024 /dev/zero | tr '\0' x > "$work/www/1k"
head -c 1048576 /dev/zero | tr '\0' x > "$work/www/1m"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/origin.key" -out "$work/origin.crt" 2>/dev/null
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$PLAIN_PORT; root $work/www; }
  server { listen 127.0.0.1:$TLS_PORT ssl; listen 127.0.0.1:$ITLS_PORT ssl; root $work/www;
           ssl_certificate $work/origin.crt; ssl_certificate_key $work/origin.key; }
}
NGINX
mkdir -p "$work/tmp"
nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)

cat > "$work/cordon.yaml" <<YAML
version: 1
agent: { name: load }
listen: { proxy: "127.0.0.1:0" }
tls: { ca_dir: "$work/ca", extra_roots: ["$work/origin.crt"] }
egress:
  - { host: "127.0.0.1", ports: [$PLAIN_PORT, $TLS_PORT], allow_ips: [127.0.0.1/32] }
  # Interception with injection: the origin gets the credential, the client never had it.
  - { host: "127.0.0.1", ports: [$ITLS_PORT], allow_ips: [127.0.0.1/32], credential: load }
credentials:
  load: { source: { env: CORDON_LOAD_TOKEN }, inject: { header: Authorization, value: "Bearer {secret}" } }
audit: { path: "$work/audit.jsonl", fsync: batch }
YAML
CORDON_LOAD_TOKEN="load-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  "$bin" serve --config "$work/cordon.yaml" 2> "$work/logs/cordon.log" &
cordon=$!
pids+=($cordon)
for _ in $(seq 100); do grep -q 'listener=proxy' "$work/logs/cordon.log" 2>/dev/null && break; sleep 0.1; done
proxy=$(grep -o 'listener=proxy addr=[0-9.:]*' "$work/logs/cordon.log" | head -1 | sed 's/.*addr=//')
[ -n "$proxy" ] || { cat "$work/logs/cordon.log" >&2; exit 1; }
sleep 0.5
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
idle_rss=$(rss_kb "$cordon")
clk=$(getconf CLK_TCK)

# One oha run; appends "scenario target round rps p50 p99 ok errors cpu_s rss_kb".
results="$work/results.tsv"
run() { # scenario target url [oha args…]
  local sc=$1 target=$2 url=$3; shift 3
  local before after
  before=$(cpu_ticks "$cordon")
  "$OHA" --no-tui --output-format json --insecure -c "$CONNS" -z "${DUR}s" "$@" "$url" > "$work/oha.json" 2>/dev/null
  after=$(cpu_ticks "$cordon")
  python3 - "$work/oha.json" "$sc" "$target" "$round" "$(( after - before ))" "$clk" "$(rss_kb "$cordon")" "$DUR" >> "$results" <<'PY'
import json, sys
path, sc, target, rnd, ticks, clk, rss, dur = sys.argv[1:]
d = json.load(open(path))
codes = d.get("statusCodeDistribution", {})
ok = int(codes.get("200", 0))
# Requests still in flight when the run's time is up are cut by oha: not errors.
err = sum(v for k, v in d.get("errorDistribution", {}).items() if "deadline" not in k)
err += sum(v for k, v in codes.items() if k != "200")
lp = d.get("latencyPercentiles", {})
print(sc, target, rnd, f"{ok/float(dur):.0f}", f"{lp.get('p50', 0)*1000:.3f}", f"{lp.get('p99', 0)*1000:.3f}",
      ok, err, f"{int(ticks)/int(clk):.2f}", rss, sep="\t")
PY
}

for round in $(seq "$ROUNDS"); do
  run http1k direct "http://127.0.0.1:$PLAIN_PORT/1k"
  run http1k cordon "http://127.0.0.1:$PLAIN_PORT/1k" -x "http://$proxy"
  run https1k direct "https://127.0.0.1:$TLS_PORT/1k"
  run https1k cordon "https://127.0.0.1:$TLS_PORT/1k" -x "http://$proxy"
  # Below saturation: latency added by cordon itself rather than queueing for the CPU.
  run http1k@rate direct "http://127.0.0.1:$PLAIN_PORT/1k" -q "$RATE"
  run http1k@rate cordon "http://127.0.0.1:$PLAIN_PORT/1k" -q "$RATE" -x "http://$proxy"
  run https1k@rate direct "https://127.0.0.1:$TLS_PORT/1k" -q "$RATE"
  run https1k@rate cordon "https://127.0.0.1:$TLS_PORT/1k" -q "$RATE" -x "http://$proxy"
  # Interception with credential injection, kept-alive inside the tunnel and one TLS
  # connection per request (oha resumes TLS 1.3 sessions with cordon, as with nginx).
  run https1k-intercept direct "https://127.0.0.1:$TLS_PORT/1k"
  run https1k-intercept cordon "https://127.0.0.1:$ITLS_PORT/1k" -x "http://$proxy"
  run httpsnew-intercept direct "https://127.0.0.1:$TLS_PORT/1k" --disable-keepalive
  run httpsnew-intercept cordon "https://127.0.0.1:$ITLS_PORT/1k" -x "http://$proxy" --disable-keepalive
  run https1m-intercept direct "https://127.0.0.1:$TLS_PORT/1m"
  run https1m-intercept cordon "https://127.0.0.1:$ITLS_PORT/1m" -x "http://$proxy"
done
loaded_rss=$(rss_kb "$cordon")
kill -TERM "$cordon"; wait "$cordon" 2>/dev/null || true
"$bin" audit verify "$work/audit.jsonl" >/dev/null && chain=intact || chain=BROKEN

python3 - "$results" "$idle_rss" "$loaded_rss" "$CONNS" "$DUR" "$ROUNDS" "$chain" "$(wc -l < "$work/audit.jsonl")" "$RATE" <<'PY'
import sys, statistics as st
path, idle, loaded, conns, dur, rounds, chain, records, rate = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path)]
med = lambda xs: st.median(xs) if xs else 0.0
print(f"# cordon load: {conns} connections, {dur} s per run, {rounds} rounds (medians); @rate = {rate} req/s in total")
print("| scenario | target | req/s | ratio to direct | p50 ms | p99 ms | p99 added ms | errors | cordon CPU s per 10k req | cordon RSS MiB after |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for sc in ["http1k", "https1k", "http1k@rate", "https1k@rate", "https1k-intercept", "httpsnew-intercept", "https1m-intercept"]:
    base = [r for r in rows if r[0] == sc and r[1] == "direct"]
    brps = med([float(r[3]) for r in base]); bp99 = med([float(r[5]) for r in base])
    for target in ["direct", "cordon"]:
        rs = [r for r in rows if r[0] == sc and r[1] == target]
        rps = med([float(r[3]) for r in rs]); p50 = med([float(r[4]) for r in rs]); p99 = med([float(r[5]) for r in rs])
        errs = sum(int(r[7]) for r in rs); ok = sum(int(r[6]) for r in rs); cpu = sum(float(r[8]) for r in rs)
        ratios = [float(c[3]) / float(d[3]) for c, d in zip(rs, base) if float(d[3]) > 0]
        ratio = f"{med(ratios):.3f}" if target == "cordon" else "1"
        added = f"{p99 - bp99:+.3f}" if target == "cordon" else ""
        cpu10k = f"{cpu / ok * 10000:.2f}" if target == "cordon" and ok else ""
        rss = f"{med([int(r[9]) for r in rs]) / 1024:.1f}" if target == "cordon" else ""
        print(f"| {sc} | {target} | {rps:,.0f} | {ratio} | {p50:.3f} | {p99:.3f} | {added} | {errs} | {cpu10k} | {rss} |")
print(f"\ncordon RSS: idle {int(idle)/1024:.1f} MiB, after load {int(loaded)/1024:.1f} MiB; audit records {records}, chain {chain}")
PY

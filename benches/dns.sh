#!/usr/bin/env bash
# The filtering resolver under dnsperf, against the authoritative server it forwards to.
#
#   benches/dns.sh                        # 4 s per run, 32 outstanding queries, 3 rounds
#   DUR=10 ROUNDS=5 OUTSTANDING=64 benches/dns.sh
#
# Needs nsd and dnsperf (Debian packages; ../shared/bench/setup.sh installs both). Everything
# listens on 127.0.0.1. Sets: `mix` = half allowed names (TTL 3600, cacheable), half names no
# rule covers (cordon must REFUSE them without asking upstream); `fwd` = allowed names with
# TTL 0, so every query is forwarded. Prints queries/s, the ratio to nsd answering directly,
# p50/p99 latency, and cordon's CPU seconds per 10k queries.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-4}; ROUNDS=${ROUNDS:-3}; OUTSTANDING=${OUTSTANDING:-32}
NSD_PORT=${NSD_PORT:-25301}; CORDON_PORT=${CORDON_PORT:-25310}
for tool in nsd dnsperf python3; do
  command -v "$tool" >/dev/null || { echo "dns.sh: $tool not found (see the header)" >&2; exit 2; }
done
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/cordon"
work=$(mktemp -d "${TMPDIR:-/tmp}/cordon-dns.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The upstream: nsd, authoritative for bench.cordon.test.
{
  echo '$ORIGIN bench.cordon.test.'
  echo '@ 3600 IN SOA ns hostmaster 1 3600 600 86400 0'
  echo '@ 3600 IN NS ns'
  echo 'ns 3600 IN A 127.0.0.1'
  for i in $(seq 0 49); do
    echo "a$i.allow 3600 IN A 127.0.1.$((i + 1))"
    echo "n$i.allow 0 IN A 127.0.2.$((i + 1))"
    echo "d$i.deny 3600 IN A 127.0.3.$((i + 1))"
  done
} > "$work/zone"
cat > "$work/nsd.conf" <<NSD
server:
  ip-address: 127.0.0.1
  port: $NSD_PORT
  zonesdir: "$work"
  pidfile: "$work/nsd.pid"
  database: ""
  username: ""
  rrl-ratelimit: 0
  verbosity: 0
  xfrdfile: "$work/xfrd.state"
  zonelistfile: "$work/zone.list"
remote-control:
  control-enable: no
zone:
  name: bench.cordon.test
  zonefile: zone
NSD
nsd -d -c "$work/nsd.conf" 2> "$work/nsd.log" &
pids+=($!)

cat > "$work/cordon.yaml" <<YAML
version: 1
agent: { name: dns-bench }
listen: { dns: "127.0.0.1:$CORDON_PORT" }
dns: { upstream: ["127.0.0.1:$NSD_PORT"] }
egress:
  - { host: "*.allow.bench.cordon.test", allow_ips: [127.0.0.0/8] }
audit: { path: "$work/audit.jsonl", fsync: batch }
YAML
"$bin" dns --config "$work/cordon.yaml" 2> "$work/cordon.log" &
cordon=$!
pids+=($cordon)
sleep 1

for i in $(seq 0 49); do echo "a$i.allow.bench.cordon.test A"; echo "d$i.deny.bench.cordon.test A"; done > "$work/q-mix"
for i in $(seq 0 49); do echo "n$i.allow.bench.cordon.test A"; done > "$work/q-fwd"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clk=$(getconf CLK_TCK)
results="$work/results.tsv"
run() { # set target port
  local set=$1 target=$2 port=$3 before after
  before=$(cpu_ticks "$cordon")
  dnsperf -s 127.0.0.1 -p "$port" -d "$work/q-$set" -l "$DUR" -q "$OUTSTANDING" -t 1 -v > "$work/perf.txt" 2>&1
  after=$(cpu_ticks "$cordon")
  python3 - "$work/perf.txt" "$set" "$target" "$(( after - before ))" "$clk" >> "$results" <<'PY'
import sys
path, set_, target, ticks, clk = sys.argv[1:]
lat, qps, done, lost, codes = [], 0.0, 0, 0, ""
for line in open(path, errors="replace"):
    if line.startswith("> "):
        try: lat.append(float(line.split()[-1]))
        except ValueError: pass
    elif "Queries per second:" in line: qps = float(line.split()[-1])
    elif "Queries completed:" in line: done = int(line.split()[2])
    elif "Queries lost:" in line: lost = int(line.split()[2])
    elif "Response codes:" in line: codes = " ".join(line.split(":", 1)[1].split())
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0
print(set_, target, f"{qps:.0f}", f"{pct(0.5):.3f}", f"{pct(0.99):.3f}", done, lost, int(ticks) / int(clk), codes, sep="\t")
PY
}
for _ in $(seq "$ROUNDS"); do
  for set in mix fwd; do
    run "$set" direct "$NSD_PORT"
    run "$set" cordon "$CORDON_PORT"
  done
done
kill -TERM "$cordon"; wait "$cordon" 2>/dev/null || true
python3 - "$results" "$OUTSTANDING" "$DUR" "$ROUNDS" <<'PY'
import sys, statistics as st
path, outstanding, dur, rounds = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path)]
print(f"# cordon dns: dnsperf -q {outstanding} -l {dur}, {rounds} rounds (medians)")
print("| set | target | queries/s | ratio to direct | p50 ms | p99 ms | lost | cordon CPU s per 10k q | rcodes (last round) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|")
for set_ in ["mix", "fwd"]:
    base = [r for r in rows if r[0] == set_ and r[1] == "direct"]
    for target in ["direct", "cordon"]:
        rs = [r for r in rows if r[0] == set_ and r[1] == target]
        qps = st.median(float(r[2]) for r in rs)
        ratios = [float(c[2]) / float(d[2]) for c, d in zip(rs, base) if float(d[2]) > 0]
        ratio = f"{st.median(ratios):.3f}" if target == "cordon" else "1"
        done = sum(int(r[5]) for r in rs)
        cpu = f"{sum(float(r[7]) for r in rs) / done * 10000:.3f}" if target == "cordon" and done else ""
        print(f"| {set_} | {target} | {qps:,.0f} | {ratio} | {st.median(float(r[3]) for r in rs):.3f} | "
              f"{st.median(float(r[4]) for r in rs):.3f} | {sum(int(r[6]) for r in rs)} | {cpu} | {rs[-1][8]} |")
PY

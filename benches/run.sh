#!/usr/bin/env bash
# What `cordon run` costs the command it wraps: start-up (wall time of `cordon run -- true`
# against `true` itself, observing, enforcing and isolated) and the output filter's
# throughput (a 100 MiB text stream through the secret scanner, redact and log modes,
# without and with planted secrets, to /dev/null and to a pipe).
#
#   benches/run.sh                          # RUNS=30 ROUNDS=5 SIZE_MIB=100 SECRETS=1000
#   RUNS=100 ROUNDS=9 benches/run.sh
#
# Offline; needs python3 (the timer: time.perf_counter around posix_spawn + wait4, which
# also gives the CPU time of the process tree), and util-linux `unshare` with iproute2 `ip`
# for the isolated case (skipped, and said so, when the namespace cannot be made). Start-up
# cases run interleaved, one of each in turn, after a warm-up, so that other load on the
# machine spreads over all of them alike. Throughput is bytes / wall time of the whole
# `cordon run` (its start-up included); MB = 10^6 bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}; ROUNDS=${ROUNDS:-5}; SIZE_MIB=${SIZE_MIB:-100}; SECRETS=${SECRETS:-1000}
command -v python3 >/dev/null || { echo "run.sh: python3 not found" >&2; exit 2; }

cargo build --release --locked --quiet
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/cordon")
work=$(mktemp -d "${TMPDIR:-/tmp}/cordon-runbench.XXXXXX")
trap 'rm -rf "$work"' EXIT

cat > "$work/enforce.yaml" <<YAML
version: 1
agent: { name: runbench }
audit: { path: "$work/enforce.jsonl" }
YAML
cat > "$work/log.yaml" <<YAML
version: 1
agent: { name: runbench }
audit: { path: "$work/log.jsonl" }
scanning: { output: log }
YAML

isolate=1
if ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
  isolate=0; echo "run.sh: unshare or ip missing: the isolated case is skipped" >&2
elif ! "$bin" run --isolate --config "$work/enforce.yaml" --audit "$work/probe.jsonl" -- true \
    >/dev/null 2>"$work/probe.err"; then
  isolate=0; echo "run.sh: --isolate fails here ($(head -c 300 "$work/probe.err")): skipped" >&2
fi

BIN=$bin WORK=$work RUNS=$RUNS ROUNDS=$ROUNDS SIZE_MIB=$SIZE_MIB SECRETS=$SECRETS \
ISOLATE=$isolate python3 - <<'PY'
import os, random, statistics as st, sys, time, zlib

BIN, WORK = os.environ["BIN"], os.environ["WORK"]
RUNS, ROUNDS = int(os.environ["RUNS"]), int(os.environ["ROUNDS"])
SIZE, SECRETS = int(os.environ["SIZE_MIB"]) << 20, int(os.environ["SECRETS"])
ISOLATE = os.environ["ISOLATE"] == "1"
TRUE = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
devnull = os.open(os.devnull, os.O_RDWR)
buf = bytearray(1 << 20)
serial = 0

def spawn(argv, stdout):
    """Runs argv (stdin on /dev/null, stderr to a file); returns (wall s, CPU s, exit code,
    bytes read from stdout, occurrences of each needle) with stdout either /dev/null or a
    pipe drained here (needles counted when given)."""
    global serial
    serial += 1
    argv = [a.replace("@AUDIT@", f"{WORK}/trail-{serial}.jsonl") for a in argv]
    needles = stdout if isinstance(stdout, tuple) else ()
    r = w = None
    if stdout == "devnull":
        out = devnull
    else:
        r, w = os.pipe()
        out = w
    err = os.open(f"{WORK}/stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    acts = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, err, 2)]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=acts)
    os.close(err)
    got, counts, tail = 0, [0] * len(needles), b""
    if r is not None:
        os.close(w)
        keep = max((len(n) for n in needles), default=1) - 1
        while True:
            n = os.readv(r, [buf])
            if not n:
                break
            got += n
            if needles:
                # Each match is counted in the read where it ends: inside the chunk, or
                # spanning its start (then it began at most len - 1 bytes before).
                for i, needle in enumerate(needles):
                    k = len(needle) - 1
                    edge = tail[len(tail) - k:] + bytes(buf[:min(k, n)])
                    counts[i] += buf.count(needle, 0, n) + edge.count(needle)
                tail = bytes(buf[n - keep:n]) if n >= keep else (tail + bytes(buf[:n]))[-keep:]
        os.close(r)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    try:
        os.unlink(f"{WORK}/trail-{serial}.jsonl")
    except FileNotFoundError:
        pass
    return wall, ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status), got, counts

def failed(name, code):
    sys.exit(f"run.sh: {name} exited {code}: {open(f'{WORK}/stderr').read()[-2000:]}")

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

# ---- start-up ------------------------------------------------------------------------
cases = [
    ("`true`", [TRUE]),
    ("`cordon run --audit T -- true` (observe, inventory)", [BIN, "run", "--audit", "@AUDIT@", "--", TRUE]),
    ("`cordon run --config C --audit T -- true` (enforce)",
     [BIN, "run", "--config", f"{WORK}/enforce.yaml", "--audit", "@AUDIT@", "--", TRUE]),
]
if ISOLATE:
    unshare = next(p for p in ("/usr/bin/unshare", "/bin/unshare") if os.path.exists(p))
    if os.geteuid() == 0:
        cases.append(("`unshare --net --mount -- true` (the namespaces alone)",
                      [unshare, "--net", "--mount", "--propagation", "private", "--", TRUE]))
    cases.append(("`cordon run --isolate --config C --audit T -- true`",
                  [BIN, "run", "--isolate", "--config", f"{WORK}/enforce.yaml", "--audit", "@AUDIT@", "--", TRUE]))
walls = {name: [] for name, _ in cases}
cpus = {name: [] for name, _ in cases}
for i in range(3 + RUNS):
    for name, argv in cases:
        wall, cpu, code, _, _ = spawn(argv, "devnull")
        if code != 0:
            failed(name, code)
        if i >= 3:
            walls[name].append(wall * 1000)
            cpus[name].append(cpu * 1000)
base = st.median(walls[cases[0][0]])
print(f"## start-up: {RUNS} runs each, interleaved, after 3 warm-up runs (ms)\n")
print("| command | median | p90 | min | max | overhead vs `true` (median) | CPU ms (median) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, _ in cases:
    xs = walls[name]
    over = "" if name == cases[0][0] else f"+{st.median(xs) - base:.1f}"
    print(f"| {name} | {st.median(xs):.1f} | {pct(xs, 90):.1f} | {min(xs):.1f} | {max(xs):.1f} | {over} | {st.median(cpus[name]):.1f} |")
if not ISOLATE:
    print("\n(isolated case skipped: see the message above)")

# ---- the stream --------------------------------------------------------------------------
# Realistic text, no secrets: log lines, source lines and JSON records (4 MiB of distinct
# lines, repeated to SIZE). The second file has SECRETS GitHub classic tokens (valid
# checksums) planted at even intervals, so some straddle the filter's 64 KiB reads.
rng = random.Random(20261126)
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
words = ("request response worker cache client server handler session config build test "
         "module parse render update delete create index query result error retry timeout "
         "connect stream buffer record policy agent header body token_count user order item").split()
levels = ["INFO", "DEBUG", "WARN", "INFO", "INFO", "TRACE"]
paths = ["/api/v1/items", "/api/v1/users", "/healthz", "/static/app.js", "/api/v2/orders", "/search"]
code = [
    "    let {a} = {b}.iter().map(|x| x.{c}()).collect::<Vec<_>>();",
    "    if {a}.is_empty() {{ return Err(Error::{C}(\"{b} missing\".into())); }}",
    "def {a}_{b}(self, {c}, timeout=30):",
    "        return self._{a}.get({c!r}, None)",
    "    for (i, {a}) in {b}.enumerate() {{",
    "// {A} the {b} before the {c} is written back",
    "    {a}_count += len({b}_list)  # {c}",
    "import {a}.{b} as {c}",
    "    const {a} = await fetch(`${{base}}/{b}/${{id}}`);",
    "}}",
    "",
]
def w():
    return rng.choice(words)
def line():
    k = rng.random()
    if k < 0.4:
        return "2026-11-26T%02d:%02d:%02d.%03dZ %-5s [%s-%d] %s %s %s/%d status=%d dur_ms=%d" % (
            rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(1000),
            rng.choice(levels), w(), rng.randrange(8), w(), rng.choice(["GET", "POST", "PUT"]),
            rng.choice(paths), rng.randrange(100000), rng.choice([200, 200, 200, 201, 404, 500]),
            rng.randrange(2000))
    if k < 0.75:
        a, b, c = w(), w(), w()
        return rng.choice(code).format(a=a, b=b, c=c, A=a.capitalize(), C=c.capitalize())
    return '{"ts":%d,"level":"%s","msg":"%s %s %s","%s":%d,"ok":%s}' % (
        1764000000 + rng.randrange(10**6), rng.choice(levels).lower(), w(), w(), w(), w(),
        rng.randrange(10**5), rng.choice(["true", "false"]))
lines, n = [], 0
while n < 4 << 20:
    l = line() + "\n"
    lines.append(l)
    n += len(l)
block = "".join(lines).encode()
text = (block * (SIZE // len(block) + 1))[:SIZE]
text = text[: text.rfind(b"\n") + 1]
plain = f"{WORK}/plain.txt"
with open(plain, "wb") as f:
    f.write(text)
def github():
    r = "".join(rng.choice(B62) for _ in range(30))
    crc, s = zlib.crc32(r.encode()), ""
    for _ in range(6):
        s, crc = B62[crc % 62] + s, crc // 62
    return f"ghp_{r}{s}"
pieces, at = [], 0
for i in range(SECRETS):
    cut = text.rfind(b"\n", 0, (i + 1) * len(text) // (SECRETS + 1)) + 1
    pieces += [text[at:cut], f"token: {github()}\n".encode()]
    at = cut
pieces.append(text[at:])
secret = f"{WORK}/secrets.txt"
with open(secret, "wb") as f:
    f.write(b"".join(pieces))
sizes = {plain: os.path.getsize(plain), secret: os.path.getsize(secret)}
del text, pieces, block

CAT = "/bin/cat" if os.path.exists("/bin/cat") else "/usr/bin/cat"
def run(cfg):
    return [BIN, "run", "--config", f"{WORK}/{cfg}.yaml", "--audit", "@AUDIT@", "--", CAT]
stream_cases = [
    ("`cat` alone", [CAT], plain),
    ("cordon, redact (default), no secrets", run("enforce"), plain),
    ("cordon, log, no secrets", run("log"), plain),
    (f"cordon, redact, {SECRETS} secrets", run("enforce"), secret),
    (f"cordon, log, {SECRETS} secrets", run("log"), secret),
]
needles = (b"[REDACTED:github-pat]", b"ghp_")
res = {}
for sink in ("devnull", "pipe"):
    for i in range(1 + ROUNDS):
        for name, argv, path in stream_cases:
            wall, cpu, code, got, counts = spawn(
                argv + [path], ("pipe" if path == plain else needles) if sink == "pipe" else "devnull")
            if code != 0:
                failed(name, code)
            if sink == "pipe" and path == secret:
                redacted, leaked = counts
                want = (SECRETS, 0) if "redact" in name else (0, SECRETS)
                if (redacted, leaked) != want:
                    sys.exit(f"run.sh: {name}: {redacted} redacted, {leaked} tokens seen, wanted {want}")
            if i >= 1:
                res.setdefault((sink, name), []).append((sizes[path] / wall / 1e6, wall, cpu, sizes[path]))
print(f"\n## output filter: {SIZE >> 20} MiB of log/source/JSON text through `cordon run --config C -- cat FILE`,"
      f" {ROUNDS} rounds after a warm-up (MB/s = 10^6 bytes/s, wall time incl. start-up)\n")
print("| stream | stdout to | MB/s median | MB/s min–max | wall s median | CPU s median (cordon + cat) | MB per CPU-s |")
print("|---|---|---:|---:|---:|---:|---:|")
for sink in ("devnull", "pipe"):
    for name, _, _ in stream_cases:
        rs = res[(sink, name)]
        mbs = [r[0] for r in rs]
        print(f"| {name} | {'/dev/null' if sink == 'devnull' else 'a pipe'} | {st.median(mbs):,.0f} | "
              f"{min(mbs):,.0f}–{max(mbs):,.0f} | {st.median([r[1] for r in rs]):.3f} | {st.median([r[2] for r in rs]):.3f} | "
              f"{st.median([r[3] / max(r[2], 1e-3) for r in rs]) / 1e6:,.0f} |")
print(f"\nThrough the pipe (drained and checked by the timing script on every run): redact mode replaced"
      f" {SECRETS}/{SECRETS} tokens and left none readable; log mode passed them unchanged.")
print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; cores: {os.cpu_count()}")
PY

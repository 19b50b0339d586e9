#!/usr/bin/env bash
# cordon scan against the secret scanners it can get, on the same generated files in the
# same run: recall and hard negatives flagged on the evaluation corpus (scored from each
# tool's own report against the corpus manifest, by file and line), and throughput on
# secret-free text pinned to one core, as MB per CPU-second (user + system time, so that
# other load on a shared machine does not count against a tool; wall time is shown too).
#
#   benches/scan-peers.sh                 # PERF_MIB=16 SEED=20261126 CPU=0 by default
#   PERF_MIB=64 benches/scan-peers.sh     # detect-secrets needs about 5 s per MiB
#
# Peers: ripsecrets (cargo install --locked) and detect-secrets (pip, in a venv) are
# installed under $CORDON_PEERS_CACHE (default ~/.cache/cordon-peers) on first use;
# gitleaks and kingfisher are used when already on PATH. Apart from those registry
# installs everything is offline; a peer that cannot be installed is reported as such.
set -euo pipefail
cd "$(dirname "$0")/.."

PERF_MIB=${PERF_MIB:-16}
SEED=${SEED:-20261126}
CACHE=${CORDON_PEERS_CACHE:-$HOME/.cache/cordon-peers}
TARGET=${CARGO_TARGET_DIR:-target}
CPU=${CPU:-0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cordon-scan-peers.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$CACHE" "$WORK/out"

say() { printf '%s\n' "$*" >&2; }

say "== building cordon and the corpus writer"
cargo build --quiet --release --bin cordon --example scan_corpus
CORDON="$TARGET/release/cordon"
"$TARGET/release/examples/scan_corpus" "$WORK/corpus" --seed "$SEED" --perf-mib "$PERF_MIB"
EVAL="$WORK/corpus/eval"
PERF="$WORK/corpus/perf"
MANIFEST="$WORK/corpus/manifest.json"

# --- peers ------------------------------------------------------------------------------
RIPSECRETS=$(command -v ripsecrets || true)
if [[ -z $RIPSECRETS ]]; then
    RIPSECRETS="$CACHE/cargo/bin/ripsecrets"
    if [[ ! -x $RIPSECRETS ]]; then
        say "== installing ripsecrets (cargo install --locked)"
        cargo install --quiet --locked ripsecrets --root "$CACHE/cargo" >&2 ||
            say "ripsecrets: install failed, skipped"
    fi
fi
DETECT_SECRETS=$(command -v detect-secrets || true)
if [[ -z $DETECT_SECRETS ]]; then
    DETECT_SECRETS="$CACHE/venv/bin/detect-secrets"
    if [[ ! -x $DETECT_SECRETS ]]; then
        say "== installing detect-secrets (pip, venv in $CACHE/venv)"
        { python3 -m venv "$CACHE/venv" && "$CACHE/venv/bin/pip" install --quiet detect-secrets; } >&2 ||
            say "detect-secrets: install failed, skipped"
    fi
fi
GITLEAKS=$(command -v gitleaks || true)
KINGFISHER=$(command -v kingfisher || true)

# Each runner scans directory $1 and writes its native report to $2.
run_cordon() { "$CORDON" scan --format json "$1" >"$2" || [[ $? == 1 ]]; }
run_ripsecrets() { "$RIPSECRETS" "$1" >"$2" || [[ $? == 1 ]]; }
run_detect_secrets() { (cd "$1" && "$DETECT_SECRETS" scan --all-files .) >"$2"; }
run_gitleaks() {
    if "$GITLEAKS" dir --help >/dev/null 2>&1; then
        "$GITLEAKS" dir "$1" --no-banner --exit-code 0 --report-format json --report-path "$2" 2>/dev/null
    else
        "$GITLEAKS" detect --no-git --source "$1" --no-banner --exit-code 0 \
            --report-format json --report-path "$2" 2>/dev/null
    fi
}
run_kingfisher() {
    "$KINGFISHER" scan "$1" --format json --no-update-check >"$2" 2>/dev/null || [[ $? -le 205 ]]
}

version() {
    case $1 in
    cordon) "$CORDON" --version | awk '{print $2}' ;;
    ripsecrets) "$RIPSECRETS" --version 2>/dev/null | awk '{print $NF}' ;;
    detect-secrets) "$DETECT_SECRETS" --version 2>/dev/null ;;
    gitleaks) "$GITLEAKS" version 2>/dev/null ;;
    kingfisher) "$KINGFISHER" --version 2>/dev/null | awk '{print $NF}' ;;
    esac
}

TOOLS=(cordon)
[[ -x ${RIPSECRETS:-/nonexistent} ]] && TOOLS+=(ripsecrets)
[[ -x ${DETECT_SECRETS:-/nonexistent} ]] && TOOLS+=(detect-secrets)
[[ -n $GITLEAKS ]] && TOOLS+=(gitleaks)
[[ -n $KINGFISHER ]] && TOOLS+=(kingfisher)

PERF_BYTES=$(cat "$PERF"/* | wc -c)
: >"$WORK/timings"
for tool in "${TOOLS[@]}"; do
    runner="run_${tool//-/_}"
    say "== $tool: evaluation corpus"
    "$runner" "$EVAL" "$WORK/out/$tool.report" || say "$tool: failed on the evaluation corpus"
    say "== $tool: ${PERF_MIB} MiB secret-free, pinned to CPU $CPU"
    # Warm the page cache, then time one pass on one core.
    cat "$PERF"/* >/dev/null
    if /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.$tool" \
        taskset -c "$CPU" bash -c "$(declare -f "$runner"); $(declare -p CORDON RIPSECRETS DETECT_SECRETS GITLEAKS KINGFISHER 2>/dev/null); $runner '$PERF' '$WORK/out/$tool.perf'"; then
        read -r wall user sys rss_kb <"$WORK/time.$tool"
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
        printf '%s %s %s %s %s\n' "$tool" "$wall" "$cpu" "$rss_kb" "$(version "$tool")" >>"$WORK/timings"
    else
        say "$tool: failed on the secret-free corpus"
        printf '%s - - - %s\n' "$tool" "$(version "$tool")" >>"$WORK/timings"
    fi
done

# --- scoring ----------------------------------------------------------------------------
python3 - "$MANIFEST" "$EVAL" "$WORK/out" "$WORK/timings" "$PERF_BYTES" "$PERF_MIB" <<'PY'
import json, os, re, sys

manifest_path, eval_dir, out_dir, timings_path, perf_bytes, perf_mib = sys.argv[1:]
perf_bytes = int(perf_bytes)
items = json.load(open(manifest_path))
by_file = {}
for it in items:
    by_file.setdefault(it["file"], []).append(it)


def rel(path):
    path = os.path.normpath(path)
    base = os.path.normpath(eval_dir)
    if path.startswith(base + os.sep):
        path = path[len(base) + 1:]
    return path[2:] if path.startswith("./") else path


def findings(tool, report):
    """(file, first line, last line) per finding, from each tool's native report."""
    text = open(report, errors="replace").read() if os.path.exists(report) else ""
    out = []
    if tool == "cordon":
        for f in json.loads(text or "[]"):
            out.append((rel(f["path"]), f["line"], f["end_line"]))
    elif tool == "detect-secrets":
        for name, found in json.loads(text or "{}").get("results", {}).items():
            for f in found:
                out.append((rel(name), f["line_number"], f["line_number"]))
    elif tool == "gitleaks":
        for f in json.loads(text or "[]"):
            out.append((rel(f["File"]), f["StartLine"], f["EndLine"]))
    elif tool == "kingfisher":
        data = json.loads(text or "[]")
        records = data if isinstance(data, list) else data.get("findings", [])
        for r in records:
            f = r.get("finding", r)
            path = f.get("path") or f.get("file") or ""
            line = f.get("line") or f.get("start_line") or 0
            out.append((rel(path), int(line), int(f.get("end_line", line) or line)))
    elif tool == "ripsecrets":
        # `path:line:` prefixes (colour codes stripped); one line per finding.
        ansi = re.compile(r"\x1b\[[0-9;]*m")
        for line in text.splitlines():
            m = re.match(r"^(.+?):(\d+):", ansi.sub("", line))
            if m:
                out.append((rel(m.group(1)), int(m.group(2)), int(m.group(2))))
    return out


def score(found):
    secrets = [it for it in items if it["secret"]]
    negatives = [it for it in items if not it["secret"]]
    hit = set()
    on_secret = stray = 0
    for path, first, last in found:
        matched = False
        for i, it in enumerate(by_file.get(path, [])):
            if first <= it["last_line"] and last >= it["first_line"]:
                hit.add((path, it["first_line"]))
                matched = True
                on_secret += it["secret"]
        stray += not matched
    recall = sum((it["file"], it["first_line"]) in hit for it in secrets) / len(secrets)
    flagged = sum((it["file"], it["first_line"]) in hit for it in negatives) / len(negatives)
    precision = on_secret / len(found) if found else float("nan")
    missed = {}
    for it in secrets:
        if (it["file"], it["first_line"]) not in hit:
            missed[it["kind"]] = missed.get(it["kind"], 0) + 1
    wrong = {}
    for it in negatives:
        if (it["file"], it["first_line"]) in hit:
            wrong[it["kind"]] = wrong.get(it["kind"], 0) + 1
    return recall, flagged, precision, stray, len(found), missed, wrong


timings = {}
for line in open(timings_path):
    tool, wall, cpu, rss, *version = line.split()
    timings[tool] = (wall, cpu, rss, " ".join(version))

print()
print(f"Evaluation corpus: {sum(it['secret'] for it in items)} planted secrets, "
      f"{sum(not it['secret'] for it in items)} hard negatives; "
      f"throughput on {perf_mib} MiB of secret-free text, one core.")
print()
print("| tool | version | recall | hard negatives flagged | precision | findings off planted lines | MB per CPU-s (1 core) | wall s | peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
misses = {}
for tool, (wall, cpu, rss, version) in timings.items():
    recall, flagged, precision, stray, total, missed, wrong = score(
        findings(tool, os.path.join(out_dir, tool + ".report")))
    misses[tool] = (missed, wrong)
    mbs = f"{perf_bytes / 1e6 / max(float(cpu), 0.01):.1f}" if cpu != "-" else "-"
    rss_mib = f"{int(rss) / 1024:.0f}" if rss != "-" else "-"
    print(f"| {tool} | {version} | {recall:.3f} | {flagged:.3f} | {precision:.3f} | {stray} | {mbs} | {wall} | {rss_mib} |")
print()
for tool, (missed, wrong) in misses.items():
    for label, counts in (("missed", missed), ("flagged", wrong)):
        if counts:
            worst = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            print(f"{tool} {label}: {worst}")
PY

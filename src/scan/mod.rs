//! Secret scanning: exact matching of the values cordon holds (in their common encodings),
//! a built-in rule set for token formats with a keyword prefilter, custom rules, a
//! streaming interface that finds secrets across chunk boundaries with bounded memory, and
//! redaction. Findings carry the rule id and location, never the value.
//!
//! One engine serves the one-shot scan, the stream and the redactor. Every candidate
//! starts at a keyword (or known-value) hit and is judged on a slice of bounded length
//! around it, so its verdict depends only on nearby bytes. The stream evaluates a hit only
//! once that slice is complete (`forward` bytes after it), and decides between overlapping
//! candidates only once no later hit can overlap them. A stream therefore reports exactly
//! what a one-shot scan of the whole data reports, wherever the chunks split it, while
//! keeping no more than [`Scanner::window`] bytes.
//!
//! Overlaps: identical spans are reported once; when candidates overlap, a candidate is
//! dropped if an overlapping one ranks higher. A format-specific finding (or a known
//! value) always outranks a generic one (assignment or `Authorization` header), whose
//! value may run past the token it holds; otherwise the longer wins, then the more
//! specific (known value > format), then the earlier start. Dropping looks only at direct
//! overlaps, never chains, which keeps decisions local.

use std::cmp::Reverse;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};

mod checks;
mod exact;
mod rules;

#[cfg(test)]
mod rule_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

/// One secret found: which rule, and where (absolute byte offsets, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Finding {
    pub rule: Arc<str>,
    pub start: u64,
    pub end: u64,
}

/// A custom rule from config.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomRule {
    pub id: String,
    pub regex: String,
    /// Literal anchors for the prefilter; at least one must occur near a match.
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy (bits per byte) of the match, if set.
    pub entropy: Option<f64>,
}

/// A configuration or rule error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ScanError(pub String);

/// Priority of exact known-value matches when spans tie: they name the credential.
const KNOWN_PRIORITY: u8 = 4;

/// Priority of rules that judge by context rather than format (generic assignments,
/// `Authorization` headers): any overlapping format-specific finding wins over them.
pub(crate) const GENERIC_PRIORITY: u8 = 1;

/// Where a candidate came from: a rule, or a known value.
struct Source {
    id: Arc<str>,
    priority: u8,
}

/// A keyword literal that, found at a position, makes `rule` worth evaluating there.
struct Trigger {
    rule: u32,
    lit: Box<[u8]>,
    exact_case: bool,
}

/// The prefilter: one automaton over every rule's keywords (ASCII case-insensitive; the
/// case-sensitive ones are confirmed on a hit).
struct Keywords {
    ac: AhoCorasick,
    max_len: usize,
    /// Per pattern: the triggers of every keyword that is a prefix of it, since the
    /// automaton reports only the longest keyword starting at a position.
    triggers: Vec<Vec<Trigger>>,
}

/// The compiled scanner: immutable and cheap to share; rebuild it to change known values.
pub struct Scanner {
    sources: Vec<Source>,
    rules: Vec<rules::Rule>,
    exact: Option<exact::Exact>,
    keywords: Option<Keywords>,
    /// Bytes from a hit's start that its evaluation may read (including the terminator).
    forward: usize,
    /// Bytes before a keyword where a rule's match may begin.
    back: usize,
}

impl Scanner {
    /// Compiles the built-in rules, `custom` rules, and exact matchers for `known` values
    /// (each also in base64, base64url, percent- and hex-encoded form; `id` names the rule
    /// reported for it, e.g. `credential:openai`).
    pub fn new(custom: &[CustomRule], known: &[(String, String)]) -> Result<Scanner, ScanError> {
        Scanner::build(rules::builtin(), custom, known)
    }

    /// A scanner for `known` values only (no built-in rules): the cheapest pass, used where
    /// only cordon's own credentials matter, such as redacting echoed injected tokens.
    pub fn exact_only(known: &[(String, String)]) -> Result<Scanner, ScanError> {
        Scanner::build(Vec::new(), &[], known)
    }

    /// The ids of the built-in rules, in documentation order.
    pub fn builtin_rule_ids() -> Vec<&'static str> {
        rules::builtin_ids()
    }

    fn build(
        mut rules: Vec<rules::Rule>,
        custom: &[CustomRule],
        known: &[(String, String)],
    ) -> Result<Scanner, ScanError> {
        for c in custom {
            let taken: Vec<&str> = rules.iter().map(|r| &*r.id).collect();
            let rule = rules::custom(c, &taken)?;
            rules.push(rule);
        }
        let mut sources: Vec<Source> = rules
            .iter()
            .map(|r| Source {
                id: r.id.clone(),
                priority: r.priority,
            })
            .collect();
        for (id, _) in known {
            if id.is_empty() {
                return Err(ScanError("known value with an empty id".into()));
            }
            sources.push(Source {
                id: Arc::from(id.as_str()),
                priority: KNOWN_PRIORITY,
            });
        }
        let values: Vec<&[u8]> = known.iter().map(|(_, v)| v.as_bytes()).collect();
        let exact = exact::build(&values)?;
        let keywords = build_keywords(&rules)?;
        let forward = rules
            .iter()
            .map(rules::Rule::forward)
            .chain(exact.as_ref().map(|e| e.max_len))
            .max()
            .unwrap_or(0);
        let back = rules.iter().map(|r| r.back).max().unwrap_or(0);
        Ok(Scanner {
            sources,
            rules,
            exact,
            keywords,
            forward,
            back,
        })
    }

    /// Every finding in `data`, by start offset, overlapping findings merged.
    pub fn scan(&self, data: &[u8]) -> Vec<Finding> {
        let mut kept = Vec::new();
        Cursor::default().advance(self, data, 0, true, &mut kept);
        kept.iter().map(|c| self.finding(c)).collect()
    }

    /// `data` with every finding replaced by `[REDACTED:<rule-id>]`, and the findings.
    pub fn redact(&self, data: &[u8]) -> (Vec<u8>, Vec<Finding>) {
        let findings = self.scan(data);
        let mut out = Vec::with_capacity(data.len());
        let mut pos = 0;
        for f in &findings {
            out.extend_from_slice(&data[pos..f.start as usize]);
            push_label(&mut out, &f.rule);
            pos = f.end as usize;
        }
        out.extend_from_slice(&data[pos..]);
        (out, findings)
    }

    /// A streaming scan; memory stays bounded whatever the stream's length.
    pub fn stream(self: &Arc<Self>) -> ScanStream {
        ScanStream {
            core: Core::new(self.clone()),
        }
    }

    /// A streaming redactor replacing each finding with `[REDACTED:<rule-id>]`.
    pub fn redactor(self: &Arc<Self>) -> Redactor {
        Redactor {
            core: Core::new(self.clone()),
            out_pos: 0,
        }
    }

    /// The longest secret any rule can match; the stream keeps this much of a tail.
    ///
    /// Precisely: the most a stream holds back (a redactor's output lags its input by at
    /// most this), which covers a match's look-ahead and the overlaps that decide it:
    /// `2 × (forward + back)` where `forward` is the longest match plus its terminator
    /// (8 KiB key blocks set it) and `back` is how far before a keyword a match may begin.
    pub fn window(&self) -> usize {
        2 * (self.forward + self.back) + 4
    }

    fn finding(&self, c: &Cand) -> Finding {
        Finding {
            rule: self.sources[c.src as usize].id.clone(),
            start: c.start,
            end: c.end,
        }
    }

    fn rank(&self, c: &Cand) -> (bool, u64, u8, Reverse<u64>, Reverse<u32>) {
        let priority = self.sources[c.src as usize].priority;
        let specific = priority > GENERIC_PRIORITY;
        (
            specific,
            c.end - c.start,
            priority,
            Reverse(c.start),
            Reverse(c.src),
        )
    }

    /// Evaluates every hit starting in `hay[from..to]`; `hay` reaches `forward` bytes past
    /// `to` unless the data ends first.
    fn find(&self, hay: &[u8], base: u64, from: usize, to: usize, cands: &mut Vec<Cand>) {
        if let Some(ex) = &self.exact {
            let known_base = self.rules.len() as u32;
            ex.find(hay, from, to, &mut |pattern, s, e| {
                let src = known_base + ex.owner[pattern];
                cands.push(Cand::new(src, base + s as u64, base + e as u64));
            });
        }
        if let Some(kw) = &self.keywords {
            let span_end = (to + kw.max_len).min(hay.len());
            let mut pos = from;
            let mut tried: Vec<u32> = Vec::new();
            // Restart one byte after each hit (see `Exact::run`).
            while pos < to {
                let Some(m) = kw.ac.find(Input::new(hay).span(pos..span_end)) else {
                    break;
                };
                let ks = m.start();
                if ks >= to {
                    break;
                }
                tried.clear();
                for t in &kw.triggers[m.pattern().as_usize()] {
                    if (t.exact_case && !hay[ks..].starts_with(&t.lit)) || tried.contains(&t.rule) {
                        continue;
                    }
                    tried.push(t.rule);
                    let rule = &self.rules[t.rule as usize];
                    rule.eval(hay, ks, t.lit.len(), &mut |s, e| {
                        cands.push(Cand::new(t.rule, base + s as u64, base + e as u64));
                    });
                }
                pos = ks + 1;
            }
        }
    }
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Known values stay out of Debug output: only counts.
        f.debug_struct("Scanner")
            .field("rules", &self.rules.len())
            .field("known_values", &(self.sources.len() - self.rules.len()))
            .field("window", &self.window())
            .finish()
    }
}

fn build_keywords(rules: &[rules::Rule]) -> Result<Option<Keywords>, ScanError> {
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    let mut entries: Vec<(Vec<u8>, Trigger)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        for (lit, exact_case) in &r.keywords {
            let lower = lit.to_ascii_lowercase();
            if !patterns.contains(&lower) {
                patterns.push(lower.clone());
            }
            let trigger = Trigger {
                rule: i as u32,
                lit: lit.clone().into_boxed_slice(),
                exact_case: *exact_case,
            };
            entries.push((lower, trigger));
        }
    }
    if patterns.is_empty() {
        return Ok(None);
    }
    let triggers = patterns
        .iter()
        .map(|p| {
            entries
                .iter()
                .filter(|(lower, _)| p.starts_with(lower))
                .map(|(_, t)| Trigger {
                    rule: t.rule,
                    lit: t.lit.clone(),
                    exact_case: t.exact_case,
                })
                .collect()
        })
        .collect();
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .ascii_case_insensitive(true)
        .kind(Some(AhoCorasickKind::DFA))
        .build(&patterns)
        .map_err(|e| ScanError(format!("rule keywords: cannot build matcher: {e}")))?;
    let max_len = patterns.iter().map(Vec::len).max().unwrap_or(0);
    Ok(Some(Keywords {
        ac,
        max_len,
        triggers,
    }))
}

/// Appends the text that stands in for a redacted finding of `rule`.
pub(crate) fn push_label(out: &mut Vec<u8>, rule: &str) {
    out.extend_from_slice(b"[REDACTED:");
    out.extend_from_slice(rule.as_bytes());
    out.push(b']');
}

/// A candidate finding: source index and absolute span.
#[derive(Clone, Copy, Debug)]
struct Cand {
    src: u32,
    start: u64,
    end: u64,
    decided: bool,
}

impl Cand {
    fn new(src: u32, start: u64, end: u64) -> Cand {
        Cand {
            src,
            start,
            end,
            decided: false,
        }
    }
}

/// Progress through the data: which hits have been evaluated, and the candidates not yet
/// decided (or still needed to decide others).
#[derive(Default)]
struct Cursor {
    /// Hits starting before this absolute offset have been evaluated.
    scan_from: u64,
    cands: Vec<Cand>,
}

impl Cursor {
    /// Evaluates what `hay` (the data at `[base, base + hay.len())`) now allows, pushes the
    /// newly decided findings to `kept` by start, and returns the offset before which no
    /// undecided or future finding can begin.
    fn advance(
        &mut self,
        sc: &Scanner,
        hay: &[u8],
        base: u64,
        eof: bool,
        kept: &mut Vec<Cand>,
    ) -> u64 {
        let end = base + hay.len() as u64;
        let stop = if eof {
            end
        } else {
            end.saturating_sub(sc.forward as u64)
        };
        if stop > self.scan_from {
            let from = (self.scan_from - base) as usize;
            sc.find(hay, base, from, (stop - base) as usize, &mut self.cands);
            self.scan_from = stop;
        }
        // Later hits start at or after `scan_from`, so their matches begin at or after
        // `limit`: a candidate ending by then has met everything that can overlap it.
        let limit = if eof {
            u64::MAX
        } else {
            self.scan_from.saturating_sub(sc.back as u64)
        };
        self.cands.sort_unstable_by_key(|c| (c.start, c.end, c.src));
        self.cands.dedup_by_key(|c| (c.start, c.end, c.src));
        for i in 0..self.cands.len() {
            let f = self.cands[i];
            if f.decided || f.end > limit {
                continue;
            }
            self.cands[i].decided = true;
            let rank = sc.rank(&f);
            let beaten = self
                .cands
                .iter()
                .take_while(|g| g.start < f.end)
                .any(|g| g.end > f.start && sc.rank(g) > rank);
            if !beaten {
                kept.push(f);
            }
        }
        let undecided = self
            .cands
            .iter()
            .filter(|c| !c.decided)
            .map(|c| c.start)
            .min();
        let release = if eof {
            end
        } else {
            limit.min(undecided.unwrap_or(u64::MAX))
        };
        self.cands.retain(|c| !(c.decided && c.end <= release));
        release
    }
}

/// The buffer and cursor a stream or redactor keeps.
struct Core {
    scanner: Arc<Scanner>,
    buf: Vec<u8>,
    base: u64,
    cursor: Cursor,
}

impl Core {
    fn new(scanner: Arc<Scanner>) -> Core {
        Core {
            scanner,
            buf: Vec::new(),
            base: 0,
            cursor: Cursor::default(),
        }
    }

    fn advance(&mut self, chunk: &[u8], eof: bool, kept: &mut Vec<Cand>) -> u64 {
        self.buf.extend_from_slice(chunk);
        self.cursor
            .advance(&self.scanner, &self.buf, self.base, eof, kept)
    }

    /// Drops buffered bytes before `keep` (absolute), but never what the next evaluation
    /// needs: a hit's left boundary byte and a custom rule's reach before its keyword.
    fn trim(&mut self, keep: u64) {
        let needed = self
            .cursor
            .scan_from
            .saturating_sub(self.scanner.back as u64 + 1);
        let keep = keep.min(needed);
        if keep > self.base {
            let n = (keep - self.base) as usize;
            self.buf.drain(..n);
            self.base = keep;
        }
    }
}

/// Feed chunks, get findings with absolute offsets, each exactly once.
pub struct ScanStream {
    core: Core,
}

impl ScanStream {
    /// Scans the next chunk; returns the findings that are now complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Finding> {
        self.step(chunk, false)
    }

    /// Ends the stream; returns what the tail still held.
    pub fn finish(&mut self) -> Vec<Finding> {
        self.step(&[], true)
    }

    /// Bytes currently held (at most [`Scanner::window`] plus the last chunk).
    pub fn buffered(&self) -> usize {
        self.core.buf.len()
    }

    fn step(&mut self, chunk: &[u8], eof: bool) -> Vec<Finding> {
        let mut kept = Vec::new();
        self.core.advance(chunk, eof, &mut kept);
        self.core.trim(u64::MAX);
        if eof {
            self.core.base += self.core.buf.len() as u64;
            self.core.buf.clear();
        }
        kept.iter().map(|c| self.core.scanner.finding(c)).collect()
    }
}

/// Feed chunks, get redacted bytes (a tail is held back until it cannot hold a secret).
pub struct Redactor {
    core: Core,
    /// Absolute offset of the next input byte to pass on (or skip, inside a finding).
    out_pos: u64,
}

impl Redactor {
    /// Redacts the next chunk; returns the bytes that are safe to pass on now, and the
    /// findings that were redacted.
    pub fn feed(&mut self, chunk: &[u8]) -> (Vec<u8>, Vec<Finding>) {
        self.step(chunk, false)
    }

    /// Ends the stream; returns the held-back tail, redacted.
    pub fn finish(&mut self) -> (Vec<u8>, Vec<Finding>) {
        self.step(&[], true)
    }

    /// Bytes currently held back.
    pub fn buffered(&self) -> usize {
        self.core.buf.len()
    }

    fn step(&mut self, chunk: &[u8], eof: bool) -> (Vec<u8>, Vec<Finding>) {
        let mut kept = Vec::new();
        let release = self.core.advance(chunk, eof, &mut kept);
        let core = &self.core;
        let mut out = Vec::with_capacity(chunk.len());
        let at = |abs: u64| (abs - core.base) as usize;
        for f in &kept {
            // Kept findings never overlap and start after everything already passed on.
            debug_assert!(f.start >= self.out_pos);
            out.extend_from_slice(&core.buf[at(self.out_pos)..at(f.start)]);
            push_label(&mut out, &core.scanner.sources[f.src as usize].id);
            self.out_pos = f.end;
        }
        if release > self.out_pos {
            out.extend_from_slice(&core.buf[at(self.out_pos)..at(release)]);
            self.out_pos = release;
        }
        let findings = kept.iter().map(|c| core.scanner.finding(c)).collect();
        self.core.trim(self.out_pos);
        if eof {
            self.core.base += self.core.buf.len() as u64;
            self.core.buf.clear();
        }
        (out, findings)
    }
}

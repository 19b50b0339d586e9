//! Request path normalisation and `*`/`**` segment patterns.

/// Why a path is refused as ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

fn err(msg: impl Into<String>) -> PathError {
    PathError(msg.into())
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Normalises a request path (no query): decodes unreserved percent-escapes, resolves `.`
/// and `..`; refuses encodings that servers disagree on.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(err("path does not start with \"/\""));
    }
    if is_plain(raw) {
        return Ok(raw.to_owned());
    }
    let decoded = decode(raw)?;
    resolve_segments(&decoded)
}

/// Whether the path is already in normal form, so the hot path can copy it as is.
fn is_plain(raw: &str) -> bool {
    // One pass over the bytes, tracking where the current segment started so `//` and
    // dot segments (also `.;`/`..;`) are seen without splitting.
    let bytes = raw.as_bytes();
    let mut seg_start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b'%' | b'\\' => return false,
            b'/' => {
                if i == seg_start {
                    return false;
                }
                if dot_head(&raw[seg_start..i]).is_some() {
                    return false;
                }
                seg_start = i + 1;
            }
            _ if is_control(b) || !b.is_ascii() => return false,
            _ => {}
        }
    }
    dot_head(&raw[seg_start..]).is_none()
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// If the segment is `.`/`..`, possibly hidden behind `;params`, returns that head.
fn dot_head(seg: &str) -> Option<&str> {
    let head = seg.split(';').next().unwrap_or(seg);
    matches!(head, "." | "..").then_some(head)
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Reads the `%XX` escape at `at`, if the bytes there are one.
fn escape_at(bytes: &[u8], at: usize) -> Option<u8> {
    match bytes.get(at..at + 3) {
        Some([b'%', hi, lo]) => Some(hex_val(*hi)? << 4 | hex_val(*lo)?),
        _ => None,
    }
}

fn followed_by_hex_pair(bytes: &[u8], at: usize) -> bool {
    matches!(bytes.get(at..at + 2), Some([hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit())
}

fn push_escape(out: &mut String, b: u8) {
    out.push('%');
    out.push(UPPER_HEX[usize::from(b >> 4)] as char);
    out.push(UPPER_HEX[usize::from(b & 0xf)] as char);
}

/// Length of the UTF-8 sequence a lead byte starts; `None` for bytes that can never lead
/// (continuations, and `C0`/`C1`/`F5`+ which only appear in overlong or out-of-range forms).
fn utf8_len(lead: u8) -> Option<usize> {
    match lead {
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

/// Decodes escapes of unreserved bytes, upper-cases the rest, and refuses the escapes and
/// bytes that different servers would read differently.
fn decode(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let Some(v) = escape_at(bytes, i) else {
                return Err(err("invalid percent-escape"));
            };
            match v {
                b'/' => return Err(err("encoded slash (%2F)")),
                b'\\' => return Err(err("encoded backslash (%5C)")),
                0 => return Err(err("encoded NUL (%00)")),
                _ if is_control(v) => return Err(err("encoded control character")),
                b'%' if followed_by_hex_pair(bytes, i + 3) => {
                    return Err(err("double percent-encoding (%25 followed by hex digits)"))
                }
                _ if is_unreserved(v) => {
                    out.push(v as char);
                    i += 3;
                }
                0x80.. => {
                    let n = utf8_len(v)
                        .ok_or_else(|| err("percent-encoded bytes are not valid UTF-8"))?;
                    let mut seq = [0u8; 4];
                    for (k, slot) in seq.iter_mut().enumerate().take(n) {
                        *slot = escape_at(bytes, i + 3 * k)
                            .ok_or_else(|| err("percent-encoded bytes are not valid UTF-8"))?;
                    }
                    // Std's validator refuses overlong forms, surrogates and values past
                    // U+10FFFF, which the lead-byte length alone would let through.
                    if std::str::from_utf8(&seq[..n]).is_err() {
                        return Err(err("percent-encoded bytes are not valid UTF-8"));
                    }
                    for &byte in &seq[..n] {
                        push_escape(&mut out, byte);
                    }
                    i += 3 * n;
                }
                _ => {
                    push_escape(&mut out, v);
                    i += 3;
                }
            }
            continue;
        }
        if b == b'\\' {
            return Err(err("backslash in path"));
        }
        if is_control(b) {
            return Err(err("control character in path"));
        }
        if b.is_ascii() {
            out.push(b as char);
        } else {
            // A literal character and its escaped spelling must normalise alike, and the
            // escaped one is kept encoded.
            push_escape(&mut out, b);
        }
        i += 1;
    }
    Ok(out)
}

/// Refuses empty and disguised dot segments, then applies RFC 3986 remove_dot_segments,
/// refusing a climb above the root.
fn resolve_segments(path: &str) -> Result<String, PathError> {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i == last;
        if seg.is_empty() {
            if !is_last {
                return Err(err("empty path segment (\"//\")"));
            }
            trailing_slash = true;
            continue;
        }
        match dot_head(seg) {
            Some(head) if head.len() != seg.len() => {
                return Err(err("dot segment with parameters (\".;\" or \"..;\")"));
            }
            Some(".") => trailing_slash = is_last,
            Some(_) => {
                if kept.pop().is_none() {
                    return Err(err("\"..\" climbs above the root"));
                }
                trailing_slash = is_last;
            }
            None => kept.push(seg),
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &kept {
        out.push('/');
        out.push_str(seg);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// One compiled segment of a [`PathPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
    /// `**`: zero or more segments.
    Any,
}

impl Seg {
    fn accepts(&self, seg: &str) -> bool {
        match self {
            Seg::Literal(lit) => lit == seg,
            Seg::One => !seg.is_empty(),
            Seg::Any => true,
        }
    }
}

/// A path pattern: `/` separated segments, `*` one segment, `**` any number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    raw: String,
    segs: Vec<Seg>,
}

impl PathPattern {
    /// Parses a config path pattern.
    pub fn parse(raw: &str) -> Result<PathPattern, PathError> {
        let Some(body) = raw.strip_prefix('/') else {
            return Err(err("path pattern must start with \"/\""));
        };
        if let Some(bad) = raw
            .bytes()
            .find(|&b| matches!(b, b'%' | b'\\' | b'?' | b'#') || is_control(b) || !b.is_ascii())
        {
            return Err(err(format!(
                "path pattern contains {:?}; write the normalised path",
                bad as char
            )));
        }
        let parts: Vec<&str> = body.split('/').collect();
        let last = parts.len() - 1;
        let mut segs = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let seg = match *part {
                "" if i != last => return Err(err("path pattern has an empty segment (\"//\")")),
                "*" => Seg::One,
                // Adjacent `**` mean the same as one and would only slow matching down.
                "**" if segs.last() == Some(&Seg::Any) => continue,
                "**" => Seg::Any,
                p if p.contains('*') => {
                    return Err(err("\"*\" and \"**\" must be whole path segments"))
                }
                p if dot_head(p).is_some() => {
                    return Err(err("path pattern has a \".\" or \"..\" segment"))
                }
                p => Seg::Literal(p.to_owned()),
            };
            segs.push(seg);
        }
        Ok(PathPattern {
            raw: raw.to_owned(),
            segs,
        })
    }

    /// The pattern as written in config.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether a normalised path matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        // Greedy glob matching with backtracking to the last `**`: linear for one `**`,
        // and never exponential however many a pattern has.
        let segs = &self.segs;
        let mut pi = 0;
        let mut rest = Some(body);
        let mut backtrack: Option<(usize, Option<&str>)> = None;
        loop {
            match segs.get(pi) {
                Some(Seg::Any) => {
                    backtrack = Some((pi, rest));
                    pi += 1;
                    continue;
                }
                Some(seg) => {
                    if let Some((head, tail)) = split_segment(rest) {
                        if seg.accepts(head) {
                            pi += 1;
                            rest = tail;
                            continue;
                        }
                    }
                }
                None if rest.is_none() => return true,
                None => {}
            }
            let Some((star, star_rest)) = backtrack else {
                return false;
            };
            let Some((_, tail)) = split_segment(star_rest) else {
                return false;
            };
            backtrack = Some((star, tail));
            pi = star + 1;
            rest = tail;
        }
    }
}

/// Splits off the next path segment; `None` once every segment is consumed (distinct from
/// an empty trailing segment, which a trailing slash leaves).
fn split_segment(rest: Option<&str>) -> Option<(&str, Option<&str>)> {
    let rest = rest?;
    Some(match rest.split_once('/') {
        Some((head, tail)) => (head, Some(tail)),
        None => (rest, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let cases = [
            ("/", "/"),
            ("/repos/acme/web", "/repos/acme/web"),
            ("/repos/acme/../other", "/repos/other"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/a/", "/a/"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/b/%2e%2e/", "/a/"),
            ("/a/%2E/b", "/a/b"),
            ("/%41%62%7e%2D%5f", "/Ab~-_"),
            ("/a%3ab", "/a%3Ab"),
            ("/a%3Ab", "/a%3Ab"),
            ("/q%20r", "/q%20r"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/café", "/caf%C3%A9"),
            ("/%e2%82%ac", "/%E2%82%AC"),
            ("/%f0%9f%98%80", "/%F0%9F%98%80"),
            ("/%25", "/%25"),
            ("/%25zz", "/%25zz"),
            ("/a;b=c/d", "/a;b=c/d"),
            ("/...", "/..."),
            ("/.well-known/x", "/.well-known/x"),
            ("/..a/a..", "/..a/a.."),
            ("/a/;/b", "/a/;/b"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
            // Normal form is a fixed point.
            assert_eq!(normalize_path(want).as_deref(), Ok(want), "{want}");
        }
    }

    #[test]
    fn fast_path_agrees_with_full_normalisation() {
        let cases = [
            ("/", true),
            ("/a/b/", true),
            ("/a;b=c/.x/x./...", true),
            ("/a//b", false),
            ("//", false),
            ("/a/.", false),
            ("/a/../b", false),
            ("/..;/b", false),
            ("/.;", false),
            ("/a%41", false),
            ("/a\\b", false),
            ("/a\tb", false),
            ("/caf\u{e9}", false),
        ];
        for (raw, plain) in cases {
            assert_eq!(is_plain(raw), plain, "{raw:?}");
            if plain {
                assert_eq!(
                    decode(raw).and_then(|d| resolve_segments(&d)).as_deref(),
                    Ok(raw)
                );
            }
        }
    }

    #[test]
    fn refuses_ambiguous() {
        let cases = [
            "",
            "a/b",
            "*",
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a%0d%0a",
            "/a%7f",
            "/a\tb",
            "/a\u{7f}",
            "/%zz",
            "/%4",
            "/a%",
            "/%%41",
            "/%252F",
            "/%252e%252e/",
            "/%2541",
            "/%c0%ae",
            "/%c0%af",
            "/%e0%80%ae",
            "/%f0%80%80%ae",
            "/%c3",
            "/%c3%41",
            "/%80",
            "/%ed%a0%80",
            "/%f4%90%80%80",
            "/%ff",
            "//",
            "//a",
            "/a//b",
            "/a/b//",
            "/..;/admin",
            "/a/..;/b",
            "/a/.;x/b",
            "/a/%2e%2e;/b",
            "/..",
            "/a/../..",
            "/%2e%2e/",
            "/a/../../b",
        ];
        for raw in cases {
            assert!(normalize_path(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn error_names_the_problem() {
        assert!(normalize_path("/a%2fb").unwrap_err().0.contains("%2F"));
        assert!(normalize_path("/a//b").unwrap_err().0.contains("//"));
        assert!(normalize_path("/%c0%ae").unwrap_err().0.contains("UTF-8"));
        assert!(normalize_path("/..;/x").unwrap_err().0.contains(";"));
    }

    #[test]
    fn pattern_parse_errors() {
        for bad in [
            "",
            "issues",
            "/a*",
            "/v1/*.json",
            "/***",
            "/a/../b",
            "/a/./b",
            "/..",
            "/a//b",
            "//",
            "/a%2Fb",
            "/a\\b",
            "/a;/..;/b",
            "/é",
        ] {
            assert!(
                PathPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        for good in [
            "/",
            "/issues",
            "/issues/",
            "/*",
            "/**",
            "/a/*/b/**",
            "/.well-known/x",
        ] {
            assert_eq!(PathPattern::parse(good).unwrap().as_str(), good);
        }
    }

    fn check(pattern: &str, yes: &[&str], no: &[&str]) {
        let p = PathPattern::parse(pattern).unwrap();
        for path in yes {
            assert!(p.matches(path), "{pattern} should match {path}");
        }
        for path in no {
            assert!(!p.matches(path), "{pattern} should not match {path}");
        }
    }

    #[test]
    fn segment_aligned_matching() {
        check(
            "/issues",
            &["/issues"],
            &[
                "/issues/1",
                "/issues-private",
                "/issues/",
                "/Issues",
                "/",
                "/x/issues",
            ],
        );
        check(
            "/issues/**",
            &["/issues", "/issues/", "/issues/1", "/issues/1/comments"],
            &["/issues-private", "/issues-private/1", "/other"],
        );
        check(
            "/repos/*/*/pulls",
            &["/repos/acme/web/pulls"],
            &[
                "/repos/acme/pulls",
                "/repos/acme//pulls",
                "/repos/a/b/c/pulls",
                "/repos/a/b/pulls/1",
            ],
        );
        check("/*", &["/a"], &["/", "/a/b", "/a/"]);
        check("/**", &["/", "/a", "/a/", "/a/b/c"], &[]);
        check("/", &["/"], &["/a"]);
        check("/a/", &["/a/"], &["/a", "/a/b"]);
        check(
            "/repos/*/*/hooks/**",
            &["/repos/a/b/hooks", "/repos/a/b/hooks/1/pings"],
            &["/repos/a/b/hookshot", "/repos/a/hooks"],
        );
        check(
            "/**/comments/*",
            &["/comments/1", "/a/b/comments/1", "/comments/comments/2"],
            &["/comments", "/a/comments/", "/a/comments/1/x"],
        );
        check(
            "/a/**/b/**/c",
            &["/a/b/c", "/a/x/b/y/z/c", "/a/b/b/c/c"],
            &["/a/c", "/a/b/x", "/a/x/c"],
        );
        check("/a/**/**/b", &["/a/b", "/a/x/y/b"], &["/a/x"]);
        check("/x", &[], &["x", ""]);
    }

    #[test]
    fn many_double_stars_stay_fast() {
        let p = PathPattern::parse("/**/a/**/a/**/a/**/a/**/b").unwrap();
        let path = format!("/{}", vec!["a"; 200].join("/"));
        assert!(!p.matches(&path));
    }
}

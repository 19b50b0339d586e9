//! The hash chain's canonical form, shared by the writer and `cordon audit verify`.
//!
//! Every line of an audit file is one JSON object followed by `\n`. A record's hash is
//! defined so that anyone can recompute it with their own tools:
//!
//! 1. Parse the line as a JSON object and remove its `hash` member. What remains holds the
//!    record's fields plus `seq` (1, 2, 3 … with no gaps), `ts` (RFC 3339 UTC with
//!    milliseconds) and `prev`.
//! 2. Serialise that object canonically: object keys sorted by their UTF-8 bytes at every
//!    depth, no whitespace anywhere, strings as UTF-8 with only `"`, `\` and control
//!    characters escaped (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, else `\u00xx` in lower
//!    case), integers in plain decimal, other numbers in their shortest round-trip form.
//!    This is what `serde_json::to_vec` produces for a key-sorted map.
//! 3. `hash` is `"sha256:"` followed by the lower-case hex SHA-256 of those bytes.
//!
//! `prev` is the `hash` of the record before; the first record's `prev` is `"sha256:"`
//! followed by 64 zeros. The writer emits every line already in canonical form (with
//! `hash` in its sorted place), so for lines it wrote, deleting the `"hash":"…"` member
//! textually yields the hashed bytes.
//!
//! Because the hash covers the parsed object rather than the line's text, re-ordering keys
//! or adding whitespace inside a line keeps it valid: such edits do not change what the
//! record says. Any change to a key or value does break the chain, and so do duplicate keys,
//! which `parse_line` rejects because JSON parsers disagree on which duplicate wins.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// `prev` of the first record in a chain.
pub const GENESIS_PREV: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Canonical bytes of a record object (without `hash`), as defined in the module docs.
pub fn canonical_bytes(record: &Map<String, Value>) -> Vec<u8> {
    let mut value = Value::Object(record.clone());
    // A no-op with serde_json's default sorted map; it keeps the definition true should a
    // dependency ever switch on `preserve_order` for the whole build.
    value.sort_all_objects();
    serde_json::to_vec(&value).expect("a JSON value always serialises")
}

/// `"sha256:<hex>"` of the canonical bytes of `record` (which must not contain `hash`).
pub fn record_hash(record: &Map<String, Value>) -> String {
    let digest = Sha256::digest(canonical_bytes(record));
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        out.push(char::from_digit(u32::from(byte >> 4), 16).expect("nibble"));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).expect("nibble"));
    }
    out
}

/// Parses one line (without its `\n`) into a JSON object, rejecting duplicate keys.
pub fn parse_line(line: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Strict>(line) {
        Ok(Strict(Value::Object(map))) => Ok(map),
        Ok(_) => Err("not a JSON object".to_owned()),
        Err(err) => Err(format!("not valid JSON: {err}")),
    }
}

/// Replaces every float in `value` by the one that survives a text round trip.
///
/// serde_json's default float parser is fast but may land one ulp off for long mantissas;
/// a verifier re-parsing the line would then serialise different digits and report a
/// false break. Storing the value the parser will read back makes the line a fixed point.
pub fn settle_floats(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            let mut current = n.clone();
            // Converges in one or two steps; the bound only guards against a parser bug.
            for _ in 0..4 {
                let text = current.to_string();
                match serde_json::from_str::<Number>(&text) {
                    Ok(back) if back == current => break,
                    Ok(back) => current = back,
                    Err(_) => break,
                }
            }
            *n = current;
        }
        Value::Array(items) => items.iter_mut().for_each(settle_floats),
        Value::Object(map) => map.values_mut().for_each(settle_floats),
        _ => {}
    }
}

/// A JSON value whose objects had no duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Strict, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let Strict(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Strict(Value::Object(map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_sha256_of_sorted_compact_json() {
        let map = parse_line(br#"{"seq":1,"kind":"http","prev":"x"}"#).unwrap();
        assert_eq!(
            canonical_bytes(&map),
            br#"{"kind":"http","prev":"x","seq":1}"#.to_vec()
        );
        let expected = Sha256::digest(br#"{"kind":"http","prev":"x","seq":1}"#);
        let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(record_hash(&map), format!("sha256:{hex}"));
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        assert!(parse_line(br#"{"a":1,"a":1}"#).is_err());
        assert!(parse_line(br#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(parse_line(br#"{"a":[{"b":1},{"b":2}]}"#).is_ok());
    }

    #[test]
    fn settled_floats_survive_a_round_trip() {
        for raw in [0.1 + 0.2, 1.0 / 3.0, 12345.678901234567, 9.87654321e-7, 0.4] {
            let mut value = serde_json::json!({ "duration_ms": raw });
            settle_floats(&mut value);
            let text = serde_json::to_vec(&value).unwrap();
            let back: Value = serde_json::from_slice(&text).unwrap();
            assert_eq!(serde_json::to_vec(&back).unwrap(), text);
        }
    }
}

//! `${VAR}` substitution in string scalars.

use serde_yaml_ng::Value;
use std::env::VarError;

/// A failure as (key path, problem).
pub(super) type ExpandError = (String, String);

/// Expands `${VAR}` in every string scalar of `value`; mapping keys are left alone so the
/// set of keys the validator sees is exactly the set written in the file.
pub(super) fn expand_value(
    value: &mut Value,
    env: &dyn Fn(&str) -> Result<String, VarError>,
) -> Result<(), ExpandError> {
    let mut path = String::new();
    walk(value, &mut path, env)
}

fn walk(
    value: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Result<String, VarError>,
) -> Result<(), ExpandError> {
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = expand_str(s, env).map_err(|msg| (path.clone(), msg))?;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, env)?;
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key_name(key));
                walk(item, path, env)?;
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, env)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// A mapping key as it appears in a key path.
pub(super) fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        _ => "?".to_string(),
    }
}

/// Expands one string: `${NAME}` from `env`, `$${` as a literal `${`, any other `$` as is.
pub(super) fn expand_str(
    s: &str,
    env: &dyn Fn(&str) -> Result<String, VarError>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let end = body.find('}').ok_or_else(|| {
                "unterminated `${` (close it with `}`, or write `$${` for a literal `${`)"
                    .to_string()
            })?;
            let name = &body[..end];
            if !is_var_name(name) {
                return Err(format!(
                    "`${{{name}}}` is not a valid variable reference \
                     (names are letters, digits and `_`, not starting with a digit)"
                ));
            }
            match env(name) {
                Ok(v) => out.push_str(&v),
                Err(VarError::NotPresent) => {
                    return Err(format!("environment variable {name} is not set"))
                }
                Err(VarError::NotUnicode(_)) => {
                    return Err(format!("environment variable {name} is not valid UTF-8"))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Result<String, VarError> {
        match name {
            "POD_NAME" => Ok("pod-7".to_string()),
            "EMPTY" => Ok(String::new()),
            "TRICKY" => Ok("a\nmode: observe".to_string()),
            _ => Err(VarError::NotPresent),
        }
    }

    #[test]
    fn set_variable_is_substituted() {
        assert_eq!(expand_str("${POD_NAME}", &env).unwrap(), "pod-7");
        assert_eq!(expand_str("x-${POD_NAME}-y", &env).unwrap(), "x-pod-7-y");
        assert_eq!(expand_str("${POD_NAME}${EMPTY}", &env).unwrap(), "pod-7");
    }

    #[test]
    fn unset_variable_is_an_error() {
        let err = expand_str("${NOPE}", &env).unwrap_err();
        assert_eq!(err, "environment variable NOPE is not set");
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(expand_str("$${POD_NAME}", &env).unwrap(), "${POD_NAME}");
        assert_eq!(expand_str("a$${b}c", &env).unwrap(), "a${b}c");
    }

    #[test]
    fn lone_dollar_is_literal() {
        assert_eq!(expand_str("$5 and $HOME", &env).unwrap(), "$5 and $HOME");
        assert_eq!(expand_str("trailing$", &env).unwrap(), "trailing$");
    }

    #[test]
    fn unterminated_reference_is_an_error() {
        let err = expand_str("${POD_NAME", &env).unwrap_err();
        assert!(err.contains("unterminated"), "{err}");
    }

    #[test]
    fn bad_names_are_errors() {
        assert!(expand_str("${}", &env).is_err());
        assert!(expand_str("${1X}", &env).is_err());
        assert!(expand_str("${A-B}", &env).is_err());
    }

    #[test]
    fn value_walk_reports_key_path_and_skips_keys() {
        let mut v: Value =
            serde_yaml_ng::from_str("agent: {name: a, instance: \"${NOPE}\"}").unwrap();
        let (path, msg) = expand_value(&mut v, &env).unwrap_err();
        assert_eq!(path, "agent.instance");
        assert_eq!(msg, "environment variable NOPE is not set");

        let mut v: Value = serde_yaml_ng::from_str("egress: [{host: a}, {host: \"${X\"}]").unwrap();
        let (path, _) = expand_value(&mut v, &env).unwrap_err();
        assert_eq!(path, "egress[1].host");

        // Keys are never expanded, so a `${...}` key survives as written.
        let mut v: Value = serde_yaml_ng::from_str("\"${NOPE}\": 1").unwrap();
        expand_value(&mut v, &env).unwrap();
        assert!(v.get("${NOPE}").is_some());
    }

    #[test]
    fn expanded_value_cannot_inject_structure() {
        let mut v: Value = serde_yaml_ng::from_str("agent: {instance: \"${TRICKY}\"}").unwrap();
        expand_value(&mut v, &env).unwrap();
        assert_eq!(v["agent"]["instance"].as_str(), Some("a\nmode: observe"));
        assert!(v.get("mode").is_none());
    }
}

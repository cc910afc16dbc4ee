//! A narrow JSON Schema (2020-12) checker for the Graph v1.0 schemas in `tests/data/graph-v1.0`:
//! exactly the keywords those files use (`type`, `properties`, `required`,
//! `additionalProperties: false`, `items`, `$ref` into `$defs`, `anyOf`, `enum`, `format`
//! date-time/uuid). A schema using any other validation keyword is refused, so a schema edit
//! cannot silently weaken the check. OData control annotations (`@odata.*`) are not properties
//! and are skipped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

/// Keywords the checker understands; annotations (`title`, `description`, `x-…`) are ignored.
const KNOWN: &[&str] = &[
    "$schema",
    "$id",
    "$defs",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "$ref",
    "anyOf",
    "enum",
    "format",
];

/// The schema files by name (file stem, e.g. `application`).
pub fn load(dir: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        out.insert(stem, v);
    }
    out
}

/// Every violation of `schema` (a whole file) by `value`, as `path: problem` lines.
pub fn check(value: &Value, schema: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    walk(value, schema, schema, "$", &mut errors);
    errors
}

fn walk(value: &Value, schema: &Value, root: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        errors.push(format!("{path}: schema is not an object"));
        return;
    };
    for k in s.keys() {
        if !KNOWN.contains(&k.as_str()) && !k.starts_with("x-") {
            errors.push(format!("{path}: schema keyword {k:?} is not supported"));
        }
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        match r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs").and_then(|d| d.get(name)))
        {
            Some(target) => walk(value, target, root, path, errors),
            None => errors.push(format!("{path}: unresolved $ref {r}")),
        }
    }
    if let Some(options) = s.get("anyOf").and_then(Value::as_array) {
        let ok = options.iter().any(|o| {
            let mut e = Vec::new();
            walk(value, o, root, path, &mut e);
            e.is_empty()
        });
        if !ok {
            errors.push(format!("{path}: matches none of anyOf: {value}"));
        }
    }
    if let Some(t) = s.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !allowed.iter().any(|a| is_type(value, a)) {
            errors.push(format!("{path}: {value} is not of type {allowed:?}"));
            return;
        }
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {values:?}"));
    }
    if let (Some(f), Some(text)) = (s.get("format").and_then(Value::as_str), value.as_str()) {
        let ok = match f {
            "date-time" => {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            }
            "uuid" => uuid::Uuid::parse_str(text).is_ok(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{path}: {text:?} is not a {f}"));
        }
    }
    if let Some(obj) = value.as_object() {
        object(obj, s, root, path, errors);
    }
    if let (Some(items), Some(arr)) = (s.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            walk(v, items, root, &format!("{path}[{i}]"), errors);
        }
    }
}

fn object(
    obj: &Map<String, Value>,
    s: &Map<String, Value>,
    root: &Value,
    path: &str,
    errors: &mut Vec<String>,
) {
    let props = s.get("properties").and_then(Value::as_object);
    for name in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !obj.contains_key(name) {
            errors.push(format!("{path}: required property {name:?} is missing"));
        }
    }
    let closed = s.get("additionalProperties") == Some(&Value::Bool(false));
    for (k, v) in obj {
        if k.starts_with("@odata.") {
            continue;
        }
        match props.and_then(|p| p.get(k)) {
            Some(sub) => walk(v, sub, root, &format!("{path}.{k}"), errors),
            None if closed => {
                errors.push(format!("{path}: property {k:?} is not in the v1.0 schema"))
            }
            None => {}
        }
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

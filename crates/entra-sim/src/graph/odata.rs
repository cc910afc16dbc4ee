//! OData query options: `$filter` (the subset Entra supports on these resources), `$select`,
//! `$top` / `$skiptoken` paging with an absolute `@odata.nextLink`, and `$count`.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};

use super::Ctx;
use crate::http::graph_json;

/// Default page size of directory collections.
const DEFAULT_PAGE: usize = 100;
/// Largest `$top` Entra accepts.
const MAX_PAGE: usize = 999;

/// Parsed query options.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `$filter` conditions, all of which must hold.
    pub filter: Vec<Cond>,
    /// `$select` property names.
    pub select: Option<Vec<String>>,
    /// `$top`.
    pub top: Option<usize>,
    /// Offset decoded from `$skiptoken`.
    pub skip: usize,
    /// `$count=true`.
    pub count: bool,
    /// `$orderby`: property and whether descending.
    pub order_by: Option<(String, bool)>,
    /// `$search="property:text"`: Entra matches it as a case-insensitive substring.
    pub search: Option<(String, String)>,
    /// Every option except `$skiptoken`, repeated in `@odata.nextLink` so later pages keep them.
    pub carried: Vec<(String, String)>,
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// `'text'`.
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// Anything else unquoted: a GUID (right for `Edm.Guid` properties only), a number, or a
    /// bare word. [`check_filter`] refuses it where the property's type does not take it.
    Raw(String),
}

/// One `$filter` condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `prop eq lit`.
    Eq(String, Lit),
    /// `prop ne lit` (an advanced query on directory objects).
    Ne(String, Lit),
    /// `startswith(prop,'x')`.
    StartsWith(String, String),
    /// `endswith(prop,'x')` (an advanced query on directory objects).
    EndsWith(String, String),
    /// `prop in ('a','b')`.
    In(String, Vec<Lit>),
    /// `prop/any(x:x eq 'v')` on a collection of strings.
    AnyEq(String, Lit),
    /// `not(clause)` / `not clause` (an advanced query on directory objects).
    Not(Box<Cond>),
}

impl Cond {
    pub(super) fn prop(&self) -> &str {
        match self {
            Cond::Eq(p, _)
            | Cond::Ne(p, _)
            | Cond::StartsWith(p, _)
            | Cond::EndsWith(p, _)
            | Cond::In(p, _)
            | Cond::AnyEq(p, _) => p,
            Cond::Not(c) => c.prop(),
        }
    }
}

fn parse_lit(s: &str) -> Lit {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        return Lit::Str(inner.replace("''", "'"));
    }
    match s.to_ascii_lowercase().as_str() {
        "true" => Lit::Bool(true),
        "false" => Lit::Bool(false),
        "null" => Lit::Null,
        _ => Lit::Raw(s.to_string()),
    }
}

/// Splits on `sep` (case-insensitive, surrounded by spaces) outside quotes and parentheses.
fn split_outside(s: &str, sep: &str) -> Vec<String> {
    let lower = s.to_ascii_lowercase();
    let pat = format!(" {sep} ");
    let (mut out, mut start, mut depth, mut quoted) = (Vec::new(), 0usize, 0i32, false);
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            _ if !quoted && depth == 0 && lower[i..].starts_with(&pat) => {
                out.push(s[start..i].to_string());
                i += pat.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(s[start..].to_string());
    out
}

/// `s` without one pair of parentheses that wraps all of it.
fn unwrap_parens(s: &str) -> &str {
    let Some(inner) = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) else {
        return s;
    };
    let (mut depth, mut quoted) = (0i32, false);
    for b in inner.bytes() {
        match b {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return s;
        }
    }
    inner.trim()
}

/// The clause negated by a leading `not` (followed by a space or a parenthesis).
fn strip_not(c: &str) -> Option<&str> {
    let head = c.get(..3)?;
    let rest = c.get(3..)?;
    let follows = rest.starts_with('(') || rest.starts_with(char::is_whitespace);
    (head.eq_ignore_ascii_case("not") && follows).then(|| unwrap_parens(rest.trim()))
}

/// `name(prop,'text')` for the string functions `startswith` / `endswith`.
fn string_function<'a>(c: &'a str, lower: &str, name: &str) -> Option<(&'a str, &'a str)> {
    let open = format!("{name}(");
    if !lower.starts_with(&open) || !c.ends_with(')') {
        return None;
    }
    c[open.len()..c.len() - 1].split_once(',')
}

fn parse_clause(c: &str) -> Result<Cond, String> {
    let c = c.trim();
    let bad = || format!("Invalid filter clause: syntax error in '{c}'.");
    if let Some(inner) = strip_not(c) {
        return Ok(Cond::Not(Box::new(parse_clause(inner)?)));
    }
    let lower = c.to_ascii_lowercase();
    for (name, ends) in [("startswith", false), ("endswith", true)] {
        if let Some((prop, val)) = string_function(c, &lower, name) {
            let Lit::Str(v) = parse_lit(val) else {
                return Err(bad());
            };
            let prop = prop.trim().to_string();
            return Ok(if ends {
                Cond::EndsWith(prop, v)
            } else {
                Cond::StartsWith(prop, v)
            });
        }
    }
    if let Some(pos) = lower.find("/any(") {
        let prop = c[..pos].trim().to_string();
        let inner = c[pos + 5..].strip_suffix(')').ok_or_else(bad)?;
        let (var, expr) = inner.split_once(':').ok_or_else(bad)?;
        let parts = split_outside(expr.trim(), "eq");
        if parts.len() != 2 || parts[0].trim() != var.trim() {
            return Err(bad());
        }
        return Ok(Cond::AnyEq(prop, parse_lit(&parts[1])));
    }
    for (op, make) in [("eq", 0), ("ne", 1), ("in", 2)] {
        let parts = split_outside(c, op);
        if parts.len() == 2 {
            let prop = parts[0].trim().to_string();
            if prop.is_empty() || prop.contains(' ') {
                return Err(bad());
            }
            return Ok(match make {
                0 => Cond::Eq(prop, parse_lit(&parts[1])),
                1 => Cond::Ne(prop, parse_lit(&parts[1])),
                _ => {
                    let list = parts[1].trim();
                    let inner = list
                        .strip_prefix('(')
                        .and_then(|x| x.strip_suffix(')'))
                        .ok_or_else(bad)?;
                    Cond::In(prop, inner.split(',').map(parse_lit).collect())
                }
            });
        }
    }
    Err(bad())
}

/// Parses a `$filter` expression made of `and`-joined clauses.
pub fn parse_filter(s: &str) -> Result<Vec<Cond>, String> {
    if split_outside(s, "or").len() > 1 {
        return Err("Invalid filter clause: 'or' is not supported by the emulator.".into());
    }
    split_outside(s, "and")
        .iter()
        .map(|c| parse_clause(c))
        .collect()
}

fn lit_matches(v: &Value, l: &Lit) -> bool {
    match (v, l) {
        (Value::Null, Lit::Null) => true,
        (Value::Bool(b), Lit::Bool(x)) => b == x,
        (Value::String(s), Lit::Str(x) | Lit::Raw(x)) => s.eq_ignore_ascii_case(x),
        (Value::Number(n), Lit::Raw(x)) => n.to_string() == *x,
        _ => false,
    }
}

/// Whether `obj` satisfies condition `c`.
fn holds(obj: &Value, c: &Cond) -> bool {
    let v = &obj[c.prop()];
    let text = |f: fn(&str, &str) -> bool, p: &str| {
        v.as_str()
            .is_some_and(|s| f(&s.to_ascii_lowercase(), &p.to_ascii_lowercase()))
    };
    match c {
        Cond::Eq(_, l) => lit_matches(v, l),
        Cond::Ne(_, l) => !lit_matches(v, l),
        Cond::StartsWith(_, p) => text(|s, p| s.starts_with(p), p),
        Cond::EndsWith(_, p) => text(|s, p| s.ends_with(p), p),
        Cond::In(_, ls) => ls.iter().any(|l| lit_matches(v, l)),
        Cond::AnyEq(_, l) => v
            .as_array()
            .is_some_and(|a| a.iter().any(|e| lit_matches(e, l))),
        Cond::Not(inner) => !holds(obj, inner),
    }
}

/// Whether `obj` satisfies every condition.
pub fn matches(obj: &Value, conds: &[Cond]) -> bool {
    conds.iter().all(|c| holds(obj, c))
}

impl Query {
    /// Parses the raw query string.
    pub fn parse(raw: &str) -> Result<Query, String> {
        let mut q = Query::default();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if k != "$skiptoken" {
                q.carried.push((k.to_string(), v.to_string()));
            }
            match k.as_ref() {
                "$filter" => {
                    q.filter = parse_filter(&v)?;
                }
                "$select" => {
                    q.select = Some(
                        v.split(',')
                            .map(|x| x.trim().to_string())
                            .filter(|x| !x.is_empty())
                            .collect(),
                    )
                }
                "$top" => {
                    let n: usize = v
                        .parse()
                        .map_err(|_| format!("Invalid page size specified: '{v}'."))?;
                    if n == 0 || n > MAX_PAGE {
                        return Err(format!(
                            "Invalid page size specified: '{n}'. Must be between 1 and {MAX_PAGE} inclusive."
                        ));
                    }
                    q.top = Some(n);
                }
                "$skiptoken" => {
                    let bytes = B64
                        .decode(v.as_bytes())
                        .map_err(|_| "Invalid skip token.".to_string())?;
                    let text =
                        String::from_utf8(bytes).map_err(|_| "Invalid skip token.".to_string())?;
                    q.skip = text
                        .strip_prefix("sim-offset:")
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| "Invalid skip token.".to_string())?;
                }
                "$count" => q.count = v.eq_ignore_ascii_case("true"),
                "$orderby" => {
                    let mut parts = v.split_whitespace();
                    let prop = parts.next().unwrap_or_default().to_string();
                    let desc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
                    q.order_by = Some((prop, desc));
                }
                "$search" => {
                    let term = v.trim().trim_matches('"');
                    let (prop, text) = term.split_once(':').ok_or_else(|| {
                        format!("Invalid $search clause '{v}': expected \"property:value\".")
                    })?;
                    q.search = Some((prop.trim().to_string(), text.trim().to_string()));
                }
                // Graph refuses a system query option it does not know, rather than ignoring
                // it; those it knows and the emulator does not serve are refused loudly too,
                // so a client using one is never answered as if it had not asked.
                other if other.starts_with('$') => {
                    return Err(match other {
                        "$expand" | "$skip" | "$format" | "$deltatoken" | "$levels" => {
                            format!("Query option '{other}' is not implemented by this emulator.")
                        }
                        _ => format!("Query option '{other}' is not allowed."),
                    });
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Graph refuses a `$select` naming a property its type does not have (400, "Parsing OData
/// Select and Expand failed: Could not find a property named …"; microsoft-graph-docs#4529)
/// rather than leaving it out. `sample` is an object of the type answered (none: an empty
/// collection, which the emulator cannot judge).
fn check_select(c: &Ctx<'_>, sample: Option<&Value>) -> Result<(), Response> {
    let (Some(sel), Some(Value::Object(m))) = (&c.query.select, sample) else {
        return Ok(());
    };
    match sel
        .iter()
        .find(|s| !m.keys().any(|k| k.eq_ignore_ascii_case(s)))
    {
        Some(bad) => Err(c.err(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "Parsing OData Select and Expand failed: Could not find a property named \
                 '{bad}' on type '{}'.",
                m.get("@odata.type")
                    .and_then(Value::as_str)
                    .map_or("microsoft.graph.entity", |t| t.trim_start_matches('#'))
            ),
        )),
        None => Ok(()),
    }
}

/// Project an object onto `$select` (Graph always keeps `@odata.type` when present).
fn project(v: Value, select: &Option<Vec<String>>) -> Value {
    let (Some(sel), Value::Object(m)) = (select, &v) else {
        return v;
    };
    let mut out = Map::new();
    for (k, val) in m {
        if k.starts_with("@odata") || sel.iter().any(|s| s.eq_ignore_ascii_case(k)) {
            out.insert(k.clone(), val.clone());
        }
    }
    Value::Object(out)
}

fn metadata(c: &Ctx<'_>, entity_set: &str) -> String {
    let sel = c
        .query
        .select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    format!("{}/v1.0/$metadata#{entity_set}{sel}", c.s.base_url)
}

/// Properties `endsWith` works on (Learn aad-advanced-queries: mail, otherMails,
/// userPrincipalName and proxyAddresses, with the advanced query parameters).
const ENDS_WITH: &[&str] = &["mail", "otherMails", "userPrincipalName", "proxyAddresses"];

/// Checks `$filter` against the properties the resource supports filtering on, and each
/// literal against the property's type (`resource` is the Graph type, e.g. `application`).
pub fn check_filter(c: &Ctx<'_>, resource: &str, allowed: &[&str]) -> Result<(), Response> {
    fn ends_with_prop(cond: &Cond) -> bool {
        match cond {
            Cond::EndsWith(p, _) => ENDS_WITH.iter().any(|a| a.eq_ignore_ascii_case(p)),
            Cond::Not(inner) => ends_with_prop(inner),
            _ => true,
        }
    }
    for cond in &c.query.filter {
        let prop = cond.prop();
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(prop)) || !ends_with_prop(cond) {
            return Err(c.err(
                StatusCode::BAD_REQUEST,
                "Request_UnsupportedQuery",
                &format!("Unsupported or invalid query filter clause specified for property '{prop}' of resource '{resource}'."),
            ));
        }
    }
    super::literals::check(c, resource, &c.query.filter)
}

/// A collection answer: filtered, paged, projected, with `@odata.context` and `@odata.nextLink`.
pub fn collection(c: &Ctx<'_>, entity_set: &str, items: Vec<Value>) -> Response {
    let with_count = match super::advanced::gate(c, entity_set) {
        Ok(with_count) => with_count,
        Err(refused) => return refused,
    };
    if let Err(refused) = check_select(c, items.first()) {
        return refused;
    }
    let mut items: Vec<Value> = items
        .into_iter()
        .filter(|v| matches(v, &c.query.filter))
        .filter(|v| match &c.query.search {
            Some((prop, text)) => v[prop.as_str()]
                .as_str()
                .is_some_and(|s| s.to_lowercase().contains(&text.to_lowercase())),
            None => true,
        })
        .collect();
    if let Some((prop, desc)) = &c.query.order_by {
        items.sort_by_key(|v| {
            v[prop.as_str()]
                .as_str()
                .map(str::to_lowercase)
                .unwrap_or_default()
        });
        if *desc {
            items.reverse();
        }
    }
    let total = items.len();
    let page = c.query.top.unwrap_or(DEFAULT_PAGE);
    let start = c.query.skip.min(total);
    let end = (start + page).min(total);
    let value: Vec<Value> = items[start..end]
        .iter()
        .cloned()
        .map(|v| project(v, &c.query.select))
        .collect();
    let mut body = json!({ "@odata.context": metadata(c, entity_set) });
    if with_count {
        body["@odata.count"] = json!(total);
    }
    if end < total {
        // Shaped as Graph's (Learn, "Paging Microsoft Graph data"): the options' names as they
        // are (`$filter`, `$skiptoken`), their values percent-encoded with `%20` for a space.
        let skiptoken = B64.encode(format!("sim-offset:{end}"));
        let query: Vec<String> = (c.query.carried.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("$skiptoken", skiptoken.as_str())])
            .map(|(k, v)| {
                // `byte_serialize` writes a space as `+` (and a `+` as `%2B`), a `$` as `%24`.
                let enc = |t: &str| -> String {
                    form_urlencoded::byte_serialize(t.as_bytes())
                        .collect::<String>()
                        .replace('+', "%20")
                };
                format!("{}={}", enc(k).replace("%24", "$"), enc(v))
            })
            .collect();
        body["@odata.nextLink"] = json!(format!(
            "{}/v1.0/{}?{}",
            c.s.base_url,
            c.path,
            query.join("&")
        ));
    }
    body["value"] = Value::Array(value);
    graph_json(StatusCode::OK, &body)
}

/// A single-entity answer with `@odata.context`.
pub fn entity(c: &Ctx<'_>, entity_set: &str, status: StatusCode, v: Value) -> Response {
    if let Err(refused) = check_select(c, Some(&v)) {
        return refused;
    }
    let mut v = project(v, &c.query.select);
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            json!(format!("{}/$entity", metadata(c, entity_set))),
        );
    }
    graph_json(status, &v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let f = parse_filter("appId eq 'ABC' and startswith(displayName,'Con')").unwrap();
        let obj = json!({"appId": "abc", "displayName": "Contoso app"});
        assert!(matches(&obj, &f));
        assert!(!matches(
            &json!({"appId": "abd", "displayName": "Contoso"}),
            &f
        ));
        let f = parse_filter("displayName eq 'O''Brien'").unwrap();
        assert_eq!(
            f,
            vec![Cond::Eq("displayName".into(), Lit::Str("O'Brien".into()))]
        );
        let f = parse_filter("servicePrincipalNames/any(x:x eq 'api://a')").unwrap();
        assert!(matches(&json!({"servicePrincipalNames": ["api://a"]}), &f));
        let f = parse_filter("id in ('1','2')").unwrap();
        assert!(matches(&json!({"id": "2"}), &f));
        let f = parse_filter("NOT startswith(displayName,'Con') and endswith(mail,'@x.test')");
        let f = f.unwrap();
        let obj = json!({"displayName": "Fabrikam", "mail": "a@X.test"});
        assert!(matches(&obj, &f), "{f:?}");
        assert!(matches!(&f[0], Cond::Not(_)));
        let f = parse_filter("notes eq 'x'").unwrap();
        assert_eq!(f, vec![Cond::Eq("notes".into(), Lit::Str("x".into()))]);
        assert!(parse_filter("appId wat 'x'").is_err());
        assert!(parse_filter("a eq 'x' or b eq 'y'").is_err());
    }

    #[test]
    fn skiptoken_round_trips_and_top_is_bounded() {
        let tok = B64.encode("sim-offset:7");
        assert_eq!(Query::parse(&format!("$skiptoken={tok}")).unwrap().skip, 7);
        assert!(Query::parse("$top=1000").is_err());
        assert_eq!(Query::parse("%24top=5").unwrap().top, Some(5));
    }
}

//! MCP-aware authorization: which scopes a request needs, from the JSON-RPC it carries.
//!
//! Rules map an MCP method (`tools/call`, `resources/read`, …) and, where the method names
//! something (a tool, prompt or resource), that name (exact, or a glob with `*` and `?`) to
//! scopes. The first matching rule wins; a message no rule matches needs only the resource's
//! base scopes (`required_scopes`), which every request needs anyway. A batch needs the
//! union over its entries, so one forbidden entry refuses the whole batch.
//!
//! The `Mcp-Method` / `Mcp-Name` request headers (MCP 2026-07-28, SEP-2243) are checked
//! against the body ([`check_headers`]): the upstream server acts on the body, so a header
//! that disagrees with it is refused with 400 and a JSON-RPC `HeaderMismatch` error
//! (-32020), never a shortcut past the body. `Mcp-Name` values may come encoded as
//! `=?base64?…?=` (strict base64 of UTF-8) and are decoded before the comparison. A request
//! that declares `MCP-Protocol-Version: 2026-07-28` (or later) must carry `Mcp-Method`, and
//! `Mcp-Name` for `tools/call`, `resources/read` and `prompts/get`; older clients (no
//! version header, 2025-06-18, 2025-11-25) are held only to "what you send must match".
//! Decisions never rest on a header: scopes come from the body. `Mcp-Param-*` headers are
//! left to the MCP server (forwarded untouched).

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::Value;

use crate::http::Request;

/// The first protocol version whose requests must carry `Mcp-Method` (and `Mcp-Name`).
pub const HEADERS_REQUIRED_FROM: &str = "2026-07-28";

/// Longest `Mcp-Method` / `Mcp-Name` / `MCP-Protocol-Version` value looked at; a longer one
/// is refused before any decoding.
pub const MAX_MCP_HEADER_BYTES: usize = 8192;

/// JSON-RPC error code of a header that disagrees with the body, or is missing or malformed
/// (MCP 2026-07-28 `HeaderMismatch`).
pub const HEADER_MISMATCH: i64 = -32020;

/// One configured rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// JSON-RPC method, exact or glob (`notifications/*`).
    pub method: String,
    /// Tool / prompt name or resource URI, exact or glob; `None` matches any (or none).
    pub name: Option<String>,
    /// Scopes the matching message needs, on top of the base scopes.
    pub scopes: Vec<String>,
}

/// What the body of a request says, as far as authorization cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The JSON-RPC method (`None` for a response sent by the client).
    pub method: Option<String>,
    /// The name the method acts on, if it names one.
    pub name: Option<String>,
    /// The request's `id` when it is a string or a number (for an error answer); `None` for
    /// notifications and other ids.
    pub id: Option<Value>,
    /// Whether it is a request (has an `id` member), as opposed to a notification.
    pub is_request: bool,
}

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, or not JSON-RPC 2.0 messages.
    NotJsonRpc,
    /// An empty batch.
    EmptyBatch,
}

impl BodyError {
    /// Fixed description for the client.
    pub fn description(self) -> &'static str {
        match self {
            BodyError::NotJsonRpc => "The request body is not JSON-RPC 2.0",
            BodyError::EmptyBatch => "The JSON-RPC batch is empty",
        }
    }
}

/// Glob match with `*` (any run) and `?` (one character); everything else literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

fn name_of(method: &str, params: Option<&Value>) -> Option<String> {
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        _ => return None,
    };
    params?.get(key)?.as_str().map(ToString::to_string)
}

fn message(v: &Value) -> Result<Message, BodyError> {
    let Value::Object(o) = v else {
        return Err(BodyError::NotJsonRpc);
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(BodyError::NotJsonRpc);
    }
    let id = o
        .get("id")
        .filter(|v| v.is_string() || v.is_number())
        .cloned();
    let is_request = o.contains_key("id");
    match o.get("method") {
        Some(Value::String(m)) => Ok(Message {
            name: name_of(m, o.get("params")),
            method: Some(m.clone()),
            id,
            is_request,
        }),
        Some(_) => Err(BodyError::NotJsonRpc),
        None if o.contains_key("result") || o.contains_key("error") => Ok(Message {
            method: None,
            name: None,
            id: None,
            is_request: false,
        }),
        None => Err(BodyError::NotJsonRpc),
    }
}

/// Parses a JSON-RPC body: one message or a batch.
pub fn parse_body(body: &[u8]) -> Result<Vec<Message>, BodyError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| BodyError::NotJsonRpc)?;
    match &v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(BodyError::EmptyBatch);
            }
            items.iter().map(message).collect()
        }
        other => Ok(alloc::vec![message(other)?]),
    }
}

/// Why the `Mcp-*` headers were refused: answered 400 with a JSON-RPC `HeaderMismatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// `Mcp-Method` differs from the body's `method`.
    MethodMismatch,
    /// `Mcp-Name` (decoded) differs from the body's `params.name` / `params.uri`.
    NameMismatch,
    /// The declared protocol version requires `Mcp-Method` and it is absent.
    MethodMissing,
    /// The declared protocol version requires `Mcp-Name` for this method and it is absent.
    NameMissing,
    /// An `=?base64?…?=` value that is not strict base64 of UTF-8.
    BadEncoding,
    /// A header over [`MAX_MCP_HEADER_BYTES`].
    TooLarge,
    /// `Mcp-Method`, `Mcp-Name` or `MCP-Protocol-Version` sent more than once.
    Repeated,
}

impl HeaderError {
    /// The fixed message of the JSON-RPC error (never request text).
    pub fn message(self) -> &'static str {
        match self {
            HeaderError::MethodMismatch => {
                "Header mismatch: the Mcp-Method header does not match the request body"
            }
            HeaderError::NameMismatch => {
                "Header mismatch: the Mcp-Name header does not match the request body"
            }
            HeaderError::MethodMissing => {
                "Header mismatch: this MCP-Protocol-Version requires an Mcp-Method header"
            }
            HeaderError::NameMissing => {
                "Header mismatch: this MCP-Protocol-Version requires an Mcp-Name header for this method"
            }
            HeaderError::BadEncoding => {
                "Header mismatch: the Mcp-Name header is not valid =?base64?...?= of UTF-8"
            }
            HeaderError::TooLarge => "Header mismatch: an Mcp-* header is too large",
            HeaderError::Repeated => {
                "Header mismatch: Mcp-Method, Mcp-Name and MCP-Protocol-Version may appear only once"
            }
        }
    }
}

/// Decodes a header value that may use the `=?base64?{value}?=` sentinel (markers exactly
/// as shown, lowercase): strict standard base64 with padding, of valid UTF-8. Plain values
/// are returned as they are.
pub fn decode_header_value(value: &str) -> Result<Cow<'_, str>, HeaderError> {
    if value.len() > MAX_MCP_HEADER_BYTES {
        return Err(HeaderError::TooLarge);
    }
    let Some(inner) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Ok(Cow::Borrowed(value));
    };
    let bytes = crate::b64::decode(inner).ok_or(HeaderError::BadEncoding)?;
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| HeaderError::BadEncoding)
}

/// Whether a declared `MCP-Protocol-Version` requires the standard request headers: a
/// `YYYY-MM-DD` version on or after [`HEADERS_REQUIRED_FROM`]. Anything else (absent, an
/// older version, not a date) keeps the older rules.
pub fn requires_headers(version: Option<&str>) -> bool {
    let Some(v) = version.map(str::trim) else {
        return false;
    };
    let date_like = v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    date_like && v >= HEADERS_REQUIRED_FROM
}

/// Checks the `Mcp-Method` / `Mcp-Name` headers of `req` against its parsed body. A header
/// that is present must match (after decoding); one the declared protocol version requires
/// must be present. For a batch the headers cannot describe every entry, so they are held
/// to its first.
pub fn check_headers(messages: &[Message], req: &Request<'_>) -> Result<(), HeaderError> {
    let one = |name: &str| {
        let v = req.single_header(name).map_err(|_| HeaderError::Repeated)?;
        match v {
            Some(v) if v.len() > MAX_MCP_HEADER_BYTES => Err(HeaderError::TooLarge),
            other => Ok(other),
        }
    };
    let (method, name, version) = (
        one("mcp-method")?,
        one("mcp-name")?,
        one("mcp-protocol-version")?,
    );
    let Some(first) = messages.first() else {
        return Ok(());
    };
    let required = requires_headers(version) && first.is_request;
    match method {
        Some(m) if first.method.as_deref() != Some(m) => return Err(HeaderError::MethodMismatch),
        None if required => return Err(HeaderError::MethodMissing),
        _ => {}
    }
    let names_something = matches!(
        first.method.as_deref(),
        Some("tools/call" | "resources/read" | "prompts/get")
    );
    match name {
        Some(n) => {
            let n = decode_header_value(n)?;
            if first.name.as_deref() != Some(n.as_ref()) {
                return Err(HeaderError::NameMismatch);
            }
        }
        None if required && names_something => return Err(HeaderError::NameMissing),
        None => {}
    }
    Ok(())
}

/// The `id` to answer a refused body with: the first message's, if it has a usable one.
pub fn first_id(messages: &[Message]) -> Option<&Value> {
    messages.first().and_then(|m| m.id.as_ref())
}

/// The first rule that matches a message (its method, and its name where the rule has one).
pub fn matching_rule<'r>(rules: &'r [Rule], m: &Message) -> Option<&'r Rule> {
    rule_for(rules, m.method.as_deref()?, m.name.as_deref())
}

/// The first rule that matches `method` on `name`.
pub fn rule_for<'r>(rules: &'r [Rule], method: &str, name: Option<&str>) -> Option<&'r Rule> {
    rules.iter().find(|r| {
        glob(&r.method, method)
            && match (&r.name, name) {
                (None, _) => true,
                (Some(p), Some(n)) => glob(p, n),
                (Some(_), None) => false,
            }
    })
}

/// The scopes the messages need beyond the base scopes, by the first matching rule each.
pub fn needed_scopes(rules: &[Rule], messages: &[Message]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in messages {
        if let Some(r) = matching_rule(rules, m) {
            for s in &r.scopes {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn globs() {
        assert!(glob("admin_*", "admin_reset"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("notifications/*", "notifications/initialized"));
        assert!(!glob("tools/call", "tools/callx"));
        assert!(glob("*a*b*c", "xxaxxbxxc"));
        assert!(!glob("*a*b*c", "xxaxxcxxb"));
        assert!(glob(&"*".repeat(50), &"a".repeat(1000)));
    }

    #[test]
    fn bodies() {
        let one =
            parse_body(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#)
                .unwrap();
        assert_eq!(
            one,
            vec![Message {
                method: Some("tools/call".into()),
                name: Some("x".into()),
                id: Some(serde_json::json!(1)),
                is_request: true,
            }]
        );
        let batch = parse_body(br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"result":{}}]"#).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1].method, None);
        assert_eq!(parse_body(b"[]"), Err(BodyError::EmptyBatch));
        assert_eq!(parse_body(b"{}"), Err(BodyError::NotJsonRpc));
        assert_eq!(
            parse_body(br#"{"jsonrpc":"1.0","method":"x"}"#),
            Err(BodyError::NotJsonRpc)
        );
        assert_eq!(parse_body(b"nope"), Err(BodyError::NotJsonRpc));
        let r = parse_body(
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#,
        )
        .unwrap();
        assert_eq!(r[0].name.as_deref(), Some("file:///a"));
    }

    #[test]
    fn rules_first_match_and_union() {
        let rules = vec![
            Rule {
                method: "tools/call".into(),
                name: Some("admin_*".into()),
                scopes: vec!["mcp:admin".into()],
            },
            Rule {
                method: "tools/call".into(),
                name: None,
                scopes: vec!["mcp:tools".into()],
            },
        ];
        let m = |method: &str, name: Option<&str>| Message {
            method: Some(method.into()),
            name: name.map(Into::into),
            id: None,
            is_request: true,
        };
        assert_eq!(
            needed_scopes(&rules, &[m("tools/call", Some("admin_reset"))]),
            vec!["mcp:admin"]
        );
        assert_eq!(
            needed_scopes(&rules, &[m("tools/call", Some("echo"))]),
            vec!["mcp:tools"]
        );
        assert!(needed_scopes(&rules, &[m("tools/list", None)]).is_empty());
        assert_eq!(
            needed_scopes(
                &rules,
                &[
                    m("tools/call", Some("echo")),
                    m("tools/call", Some("admin_x"))
                ]
            ),
            vec!["mcp:tools", "mcp:admin"]
        );
        let req = |headers: &'static [(&'static str, &'static str)]| {
            crate::http::Request::new("POST", "https", "h", "/mcp", headers)
        };
        let echo = [m("tools/call", Some("echo"))];
        let ok: &[(&str, &str)] = &[("mcp-method", "tools/call"), ("mcp-name", "echo")];
        assert_eq!(check_headers(&echo, &req(ok)), Ok(()));
        assert_eq!(
            check_headers(&echo, &req(&[("mcp-method", "tools/list")])),
            Err(HeaderError::MethodMismatch)
        );
        assert_eq!(
            check_headers(&echo, &req(&[("mcp-name", "admin")])),
            Err(HeaderError::NameMismatch)
        );
    }
}

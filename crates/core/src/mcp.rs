//! MCP-aware authorization: which scopes a request needs, from the JSON-RPC it carries.
//!
//! Rules map an MCP method (`tools/call`, `resources/read`, …) and, where the method names
//! something (a tool, prompt or resource), that name (exact, or a glob with `*` and `?`) to
//! scopes. The first matching rule wins; a message no rule matches needs only the resource's
//! base scopes (`required_scopes`), which every request needs anyway. A batch needs the
//! union over its entries, so one forbidden entry refuses the whole batch.
//!
//! The `Mcp-Method` / `Mcp-Name` request headers (MCP 2026-07-28) are checked against the
//! body: the upstream server acts on the body, so a header that disagrees with it is a
//! malformed request (400), never a shortcut past the body.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::Value;

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
}

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, or not JSON-RPC 2.0 messages.
    NotJsonRpc,
    /// An empty batch.
    EmptyBatch,
    /// `Mcp-Method` or `Mcp-Name` disagrees with the body.
    HeaderMismatch,
}

impl BodyError {
    /// Fixed description for the client.
    pub fn description(self) -> &'static str {
        match self {
            BodyError::NotJsonRpc => "The request body is not JSON-RPC 2.0",
            BodyError::EmptyBatch => "The JSON-RPC batch is empty",
            BodyError::HeaderMismatch => {
                "The Mcp-Method or Mcp-Name header does not match the request body"
            }
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
    match o.get("method") {
        Some(Value::String(m)) => Ok(Message {
            name: name_of(m, o.get("params")),
            method: Some(m.clone()),
        }),
        Some(_) => Err(BodyError::NotJsonRpc),
        None if o.contains_key("result") || o.contains_key("error") => Ok(Message {
            method: None,
            name: None,
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

/// Checks the `Mcp-Method` / `Mcp-Name` headers against a single-message body. For a batch
/// the headers cannot describe every entry, so they must be absent or match the first.
pub fn check_headers(
    messages: &[Message],
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Result<(), BodyError> {
    let Some(first) = messages.first() else {
        return Ok(());
    };
    if let Some(m) = mcp_method {
        if first.method.as_deref() != Some(m) {
            return Err(BodyError::HeaderMismatch);
        }
    }
    if let Some(n) = mcp_name {
        if first.name.as_deref() != Some(n) {
            return Err(BodyError::HeaderMismatch);
        }
    }
    Ok(())
}

/// The scopes the messages need beyond the base scopes, by the first matching rule each.
pub fn needed_scopes(rules: &[Rule], messages: &[Message]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in messages {
        let Some(method) = m.method.as_deref() else {
            continue;
        };
        let rule = rules.iter().find(|r| {
            glob(&r.method, method)
                && match (&r.name, &m.name) {
                    (None, _) => true,
                    (Some(p), Some(n)) => glob(p, n),
                    (Some(_), None) => false,
                }
        });
        if let Some(r) = rule {
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
                name: Some("x".into())
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
        assert_eq!(
            check_headers(
                &[m("tools/call", Some("echo"))],
                Some("tools/call"),
                Some("echo")
            ),
            Ok(())
        );
        assert_eq!(
            check_headers(&[m("tools/call", Some("echo"))], Some("tools/list"), None),
            Err(BodyError::HeaderMismatch)
        );
        assert_eq!(
            check_headers(&[m("tools/call", Some("echo"))], None, Some("admin")),
            Err(BodyError::HeaderMismatch)
        );
    }
}

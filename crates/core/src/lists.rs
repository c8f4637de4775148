//! Per-caller discovery (issue 15): the answers to `tools/list`, `prompts/list`,
//! `resources/list` and `resources/templates/list` keep only the entries the caller's token
//! may use, by the same rules and the same scope check as the request side
//! ([`Gateway::may_call`]: one place that says "may this token call that name").
//!
//! Sans-IO: the gateway remembers, per forwarded request, the JSON-RPC ids of its list
//! requests ([`Gateway::list_filter`]); the host hands each response body (JSON) or each SSE
//! event's data to [`ListFilter::filter`], which answers the rewritten bytes, or `None` when
//! the bytes answer none of those ids (pass them on untouched). Everything but the removed
//! entries is kept as it was (other members, `nextCursor`, other responses of a batch).
//!
//! Status: the core part only; no host calls it yet (see the closing notes).

use alloc::vec::Vec;

use serde_json::Value;

use crate::gateway::Gateway;
use crate::http::{Body, Identity, Request};
use crate::mcp::{self, Message};

/// A list method: the result member holding the entries, the entry's name member, and the
/// method whose rule decides whether the caller may use an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ListKind {
    member: &'static str,
    key: &'static str,
    use_method: &'static str,
}

fn kind(method: &str) -> Option<ListKind> {
    let (member, key, use_method) = match method {
        "tools/list" => ("tools", "name", "tools/call"),
        "prompts/list" => ("prompts", "name", "prompts/get"),
        "resources/list" => ("resources", "uri", "resources/read"),
        "resources/templates/list" => ("resourceTemplates", "uriTemplate", "resources/read"),
        _ => return None,
    };
    Some(ListKind {
        member,
        key,
        use_method,
    })
}

/// What a forwarded request's list answers are filtered by.
#[derive(Debug, Clone)]
pub struct ListFilter {
    resource: usize,
    identity: Identity,
    /// The ids of the request's list requests, and their kind.
    ids: Vec<(Value, ListKind)>,
}

impl Gateway {
    /// Whether `identity` may call `method` on `name` at resource `resource` (index into the
    /// config's resources): its base scopes and the first MCP rule matching that call.
    pub fn may_call(&self, resource: usize, identity: &Identity, method: &str, name: &str) -> bool {
        let Some(res) = self.config().resources.get(resource) else {
            return false;
        };
        let Some(m) = &res.mcp else {
            return crate::gateway::missing_scopes(res, identity, &[]).is_none();
        };
        let call = Message {
            method: Some(method.into()),
            name: Some(name.into()),
            id: None,
            is_request: true,
        };
        let needed = mcp::needed_scopes(&m.rules, core::slice::from_ref(&call));
        crate::gateway::missing_scopes(res, identity, &needed).is_none()
    }

    /// The filter for the answers to a forwarded request (`req.body` set), or `None` when it
    /// has no list request or the resource has no MCP rules (nothing to hide).
    pub fn list_filter(&self, req: &Request<'_>, identity: &Identity) -> Option<ListFilter> {
        let (resource, res) = self.route_of(req)?;
        res.mcp.as_ref().filter(|m| !m.rules.is_empty())?;
        let Body::Bytes(body) = req.body else {
            return None;
        };
        let ids: Vec<(Value, ListKind)> = mcp::parse_body(body)
            .ok()?
            .into_iter()
            .filter_map(|m| Some((m.id?, kind(m.method.as_deref()?)?)))
            .collect();
        (!ids.is_empty()).then(|| ListFilter {
            resource,
            identity: identity.clone(),
            ids,
        })
    }
}

impl ListFilter {
    /// Rewrites a JSON-RPC response (or batch of them) to a list request this filter tracks:
    /// the new bytes, or `None` when nothing in `bytes` answers one (pass them on as they are).
    pub fn filter(&self, gateway: &Gateway, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut v: Value = serde_json::from_slice(bytes).ok()?;
        let changed = match &mut v {
            Value::Array(items) => {
                let mut any = false;
                for item in items.iter_mut() {
                    any |= self.filter_one(gateway, item);
                }
                any
            }
            one => self.filter_one(gateway, one),
        };
        changed.then(|| serde_json::to_vec(&v).ok()).flatten()
    }

    /// Filters one response in place; true when it answers a tracked list request.
    fn filter_one(&self, gateway: &Gateway, response: &mut Value) -> bool {
        let Some(id) = response.get("id") else {
            return false;
        };
        let Some(k) = self.ids.iter().find(|(i, _)| i == id).map(|(_, k)| *k) else {
            return false;
        };
        let Some(entries) = response
            .get_mut("result")
            .and_then(|r| r.get_mut(k.member))
            .and_then(Value::as_array_mut)
        else {
            // An error answer, or a result without the list: nothing to hide.
            return true;
        };
        entries.retain(|e| {
            e.get(k.key).and_then(Value::as_str).is_some_and(|name| {
                gateway.may_call(self.resource, &self.identity, k.use_method, name)
            })
        });
        true
    }

    /// How many list requests it tracks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it tracks none (never: [`Gateway::list_filter`] answers `None` then).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The methods whose answers are filtered.
pub const LIST_METHODS: [&str; 4] = [
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

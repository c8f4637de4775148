//! Per-caller discovery: the answers to `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` keep only the entries the caller's token may use, by the same
//! rules and the same scope check as the request side ([`Gateway::may_call`]: one place that
//! says "may this token call that name").
//!
//! Sans-IO, in three steps a host carries out without deciding anything:
//!
//! 1. [`Gateway::list_filter`]: for a forwarded request (its body read), the JSON-RPC ids of
//!    its list requests and the identity they are filtered for; `None` when there is nothing
//!    to filter (no list request, no rules, `mcp.filter_lists: false`).
//! 2. [`ListFilter::response`]: at the upstream's response headers, whether the body is
//!    filtered ([`ListBody`]) and how the headers change ([`ListBody::header_edits`]:
//!    `Content-Length` goes, `Cache-Control` becomes `private`).
//! 3. [`ListBody::push`] for each body chunk and [`ListBody::finish`] at its end: bytes in,
//!    bytes out. A JSON body is held until it is complete (and then rewritten); an SSE stream
//!    is cut into events, each event is let go as soon as it is complete, and only an event
//!    answering a tracked list request is rewritten; once every tracked request is answered the
//!    rest of the stream passes untouched, without being looked at.
//!
//! Everything but the removed entries is kept as it was (other members, `nextCursor`, other
//! answers of a batch, other events). What cannot be filtered is never forwarded unfiltered:
//! a list answer over `mcp.max_list_bytes`, a compressed one, or a JSON body that is not JSON
//! is replaced by a JSON-RPC error (`-32603`) for each tracked list request (for an SSE
//! stream, the rest of the stream is then dropped, so that no later event answers them).

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde_json::Value;

use scan::{splice, Scanner, Span};

mod scan;

use crate::config::Resource;
use crate::gateway::Gateway;
use crate::http::{Body, Identity, Request};
use crate::mcp;

/// The JSON-RPC error code of a list answer the gateway could not filter (internal error).
pub const UNFILTERABLE_CODE: i32 = -32603;

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

/// Whether a request body may hold a list request (a cheap test before parsing it: every
/// list method ends in `/list`, and JSON strings cannot escape a `/` into anything else but
/// `\/`, which a client has no reason to write).
pub(crate) fn mentions_list(body: &[u8]) -> bool {
    body.windows(5).any(|w| w == b"/list")
}

/// The list requests of a forwarded request's body (before its identity is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListRequests {
    resource: usize,
    /// The ids of the request's list requests, and their kind.
    ids: Vec<(Value, ListKind)>,
    /// The request was a batch (a refusal answers as one).
    batch: bool,
    max_bytes: usize,
}

impl ListRequests {
    /// The list requests of `req` (`req.body` read) to resource `resource`, or `None` when
    /// nothing in its answers is filtered: no list request, no MCP rules, or
    /// `mcp.filter_lists: false`.
    pub(crate) fn of(res: &Resource, resource: usize, req: &Request<'_>) -> Option<ListRequests> {
        let m = res.mcp.as_ref().filter(|m| m.filter_lists)?;
        let Body::Bytes(body) = req.body else {
            return None;
        };
        if req.method != "POST" || !mentions_list(body) {
            return None;
        }
        let messages = mcp::parse_body(body).ok()?;
        let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        let ids: Vec<(Value, ListKind)> = messages
            .into_iter()
            .filter_map(|m| Some((m.id?, kind(m.method.as_deref()?)?)))
            .collect();
        (!ids.is_empty()).then_some(ListRequests {
            resource,
            ids,
            batch,
            max_bytes: m.max_list_bytes,
        })
    }

    /// The filter for the token that was verified for them.
    pub(crate) fn filter_for(self, identity: &Arc<Identity>) -> ListFilter {
        ListFilter {
            resource: self.resource,
            identity: Arc::clone(identity),
            ids: self.ids,
            batch: self.batch,
            max_bytes: self.max_bytes,
        }
    }
}

/// What a forwarded request's list answers are filtered by: carried by its
/// [`crate::Forward`] (`lists`), handed the upstream's answer with [`ListFilter::response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    resource: usize,
    identity: Arc<Identity>,
    /// The ids of the request's list requests, and their kind.
    ids: Vec<(Value, ListKind)>,
    /// The request was a batch (a refusal answers as one).
    batch: bool,
    max_bytes: usize,
}

impl Gateway {
    /// Whether `identity` may call `method` on `name` at resource `resource` (index into the
    /// config's resources): its base scopes and the first MCP rule matching that call.
    pub fn may_call(&self, resource: usize, identity: &Identity, method: &str, name: &str) -> bool {
        let Some(res) = self.config().resources.get(resource) else {
            return false;
        };
        let rule = res
            .mcp
            .as_ref()
            .and_then(|m| mcp::rule_for(&m.rules, method, Some(name)));
        let scopes = rule.map_or(&[][..], |r| r.scopes.as_slice());
        crate::gateway::missing_scopes(res, identity, scopes).is_none()
    }

    /// The filter for the answers to a request whose body was checked after its headers went
    /// on ([`Gateway::check_body`]; a [`crate::Forward`] carries it otherwise), for the
    /// identity its forward verified; `None` when nothing in them is filtered.
    pub fn list_filter(&self, req: &Request<'_>, identity: &Arc<Identity>) -> Option<ListFilter> {
        let (resource, res) = self.route_of(req)?;
        Some(ListRequests::of(res, resource, req)?.filter_for(identity))
    }
}

/// How an answer's body is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `application/json`: one JSON-RPC response (or batch), held until complete.
    Json,
    /// `text/event-stream`: events let go one by one.
    EventStream,
}

/// Why a list answer was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfilterable {
    /// Larger than `mcp.max_list_bytes`.
    TooLarge,
    /// A `Content-Encoding` the gateway does not decode (it asks for `identity`).
    Encoded,
    /// A JSON body that is not JSON.
    Malformed,
}

impl Unfilterable {
    fn message(self) -> &'static str {
        match self {
            Unfilterable::TooLarge => {
                "The gateway did not forward this list: the answer is larger than mcp.max_list_bytes"
            }
            Unfilterable::Encoded => {
                "The gateway did not forward this list: the answer is compressed and cannot be filtered"
            }
            Unfilterable::Malformed => {
                "The gateway did not forward this list: the answer is not valid JSON"
            }
        }
    }

    /// A stable name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Unfilterable::TooLarge => "too_large",
            Unfilterable::Encoded => "encoded",
            Unfilterable::Malformed => "malformed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking at the body.
    Filtering,
    /// Every tracked request is answered (SSE): the rest passes untouched.
    Passing,
    /// Not filterable: the tracked requests get errors; nothing else of the body goes on.
    Refused(Unfilterable),
    /// The errors were written: the rest of the body is dropped.
    Dropping,
}

/// The header changes of a filtered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Headers to remove (`content-length`: the body changes; `content-encoding` when the
    /// answer was compressed and is replaced by the gateway's plain errors).
    pub remove: &'static [&'static str],
    /// The new `Cache-Control` (private: the answer depends on the token).
    pub cache_control: String,
}

/// The body of an answer to a request with a [`ListFilter`], filtered as it streams.
#[derive(Debug)]
pub struct ListBody {
    filter: ListFilter,
    shape: Shape,
    state: State,
    /// JSON: the body so far. SSE: the current, incomplete event.
    buf: Vec<u8>,
    /// SSE: where in `buf` the line not yet seen whole starts.
    scan: usize,
    /// Which tracked requests were answered.
    answered: Vec<bool>,
    /// What was removed (entries) and refused, for the host's counters.
    hidden: usize,
    refused: Option<Unfilterable>,
    /// The refusal was handed to the host's log ([`ListBody::take_refusal`]).
    reported: bool,
}

impl ListFilter {
    /// How many list requests it tracks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it tracks none (never: [`Gateway::list_filter`] answers `None` then).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The kind of every tracked request, when they are all of one kind.
    fn single_kind(&self) -> Option<ListKind> {
        let (_, first) = self.ids.first()?;
        self.ids.iter().all(|(_, k)| k == first).then_some(*first)
    }

    /// The most a host needs to hold of a JSON answer (`mcp.max_list_bytes`).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// What becomes of the upstream's answer, from its status and headers: `None` when its
    /// body is not filtered (a status other than 200, or a type that is neither JSON nor an
    /// event stream: no list can be read from it).
    pub fn response(
        self,
        status: u16,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Option<ListBody> {
        if status != 200 {
            return None;
        }
        let media = content_type?.split(';').next()?.trim();
        let shape = if media.eq_ignore_ascii_case("application/json") {
            Shape::Json
        } else if media.eq_ignore_ascii_case("text/event-stream") {
            Shape::EventStream
        } else {
            return None;
        };
        let encoded = content_encoding
            .map(str::trim)
            .is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
        let answered = alloc::vec![false; self.ids.len()];
        Some(ListBody {
            filter: self,
            shape,
            state: if encoded {
                State::Refused(Unfilterable::Encoded)
            } else {
                State::Filtering
            },
            buf: Vec::new(),
            scan: 0,
            answered,
            hidden: 0,
            refused: None,
            reported: false,
        })
    }

    /// [`ListFilter::response`] from the answer's status and header list (lowercase names,
    /// as hosts have them; a repeated `Cache-Control` is joined), with the header changes to
    /// make: what every host does at the upstream's response headers.
    pub fn open(self, status: u16, headers: &[(&str, &str)]) -> Option<(ListBody, HeaderEdits)> {
        let one = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let body = self.response(status, one("content-type"), one("content-encoding"))?;
        let cache: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| *n == "cache-control")
            .map(|(_, v)| *v)
            .collect();
        let edits = body.header_edits((!cache.is_empty()).then(|| cache.join(", ")).as_deref());
        Some((body, edits))
    }

    /// Rewrites one JSON text holding a JSON-RPC response or a batch of them: `Err` when it
    /// is not JSON, `Ok(None)` when it answers no tracked request, else the new bytes (the
    /// same bytes but for the removed entries), the answered requests marked in `answered`.
    fn filter_bytes(
        &self,
        gateway: &Gateway,
        bytes: &[u8],
        answered: &mut [bool],
        hidden: &mut usize,
    ) -> Result<Option<Vec<u8>>, ()> {
        let mut pass = Pass {
            filter: self,
            gateway,
            bytes,
            edits: Vec::new(),
            answered,
            hidden,
            any: false,
        };
        let mut sc = Scanner::new(bytes);
        let walked = match sc.next_byte() {
            Some(b'[') => sc
                .elements(0, |sc, depth| pass.response(sc, depth))
                .map(|_| ()),
            Some(_) => pass.response(&mut sc, 0),
            None => None,
        };
        if walked.is_none() || !sc.at_end() {
            return Err(());
        }
        if !pass.any {
            return Ok(None);
        }
        Ok(Some(splice(bytes, &pass.edits)))
    }

    /// The JSON-RPC error answering tracked request `id`.
    fn error(id: &Value, why: Unfilterable) -> Value {
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": UNFILTERABLE_CODE, "message": why.message() },
        })
    }
}

/// One walk of [`ListFilter::filter_bytes`].
struct Pass<'p, 'b> {
    filter: &'p ListFilter,
    gateway: &'p Gateway,
    bytes: &'b [u8],
    /// The arrays rewritten (sorted, as they are found).
    edits: Vec<(Span, Vec<u8>)>,
    answered: &'p mut [bool],
    hidden: &'p mut usize,
    /// Whether it answers a tracked request.
    any: bool,
}

impl Pass<'_, '_> {
    /// One JSON-RPC response (any other value is skipped): when its `id` (the last one, as
    /// parsers take it) is a tracked list request's, the entries of its `result` the caller
    /// may not use are cut out.
    ///
    /// The `result` may come before the `id` (the TypeScript SDK writes it first). When every
    /// tracked request is of one kind (one `tools/list`: the common case) the result is
    /// filtered as it is passed, and the cuts kept only if the id turns out to be tracked;
    /// otherwise the result is walked again once the id is known.
    fn response(&mut self, sc: &mut Scanner<'_>, depth: usize) -> Option<()> {
        if sc.next_byte()? != b'{' {
            sc.value(depth)?;
            return Some(());
        }
        let single = self.filter.single_kind();
        let mut id: Option<Span> = None;
        let mut results: Vec<Span> = Vec::new();
        let mut cuts: Vec<(Span, Vec<u8>)> = Vec::new();
        let mut hidden = 0usize;
        sc.members(depth, |sc, key, d| {
            if key.is("id") {
                id = Some(sc.value(d)?);
            } else if key.is("result") && sc.next_byte()? == b'{' {
                match single {
                    Some(kind) => self.result(sc, d, kind, &mut cuts, &mut hidden)?,
                    None => results.push(sc.value(d)?),
                }
            }
            Some(())
        })?;
        let bytes = Scanner::new(self.bytes);
        let Some(id) = id.and_then(|s| serde_json::from_slice::<Value>(bytes.bytes(s)).ok()) else {
            return Some(());
        };
        let Some(i) = self
            .filter
            .ids
            .iter()
            .position(|(tracked, _)| *tracked == id)
        else {
            return Some(());
        };
        let kind = self.filter.ids.get(i).map(|(_, k)| *k)?;
        if let Some(a) = self.answered.get_mut(i) {
            *a = true;
        }
        self.any = true;
        for r in results {
            let mut sc = Scanner::at(self.bytes, r);
            self.result(&mut sc, depth + 1, kind, &mut cuts, &mut hidden)?;
        }
        self.edits.append(&mut cuts);
        *self.hidden += hidden;
        Some(())
    }

    /// A `result` object: its list member's entries are filtered.
    fn result(
        &self,
        sc: &mut Scanner<'_>,
        depth: usize,
        kind: ListKind,
        cuts: &mut Vec<(Span, Vec<u8>)>,
        hidden: &mut usize,
    ) -> Option<()> {
        sc.members(depth, |sc, key, d| {
            if key.is(kind.member) && sc.next_byte()? == b'[' {
                self.entries(sc, d, kind, cuts, hidden)?;
            }
            Some(())
        })?;
        Some(())
    }

    /// A list's entries: the array is rebuilt from the entries kept when any is removed.
    fn entries(
        &self,
        sc: &mut Scanner<'_>,
        depth: usize,
        kind: ListKind,
        cuts: &mut Vec<(Span, Vec<u8>)>,
        hidden: &mut usize,
    ) -> Option<()> {
        let mut kept: Vec<Span> = Vec::new();
        let mut removed = 0usize;
        let span = sc.elements(depth, |sc, d| {
            // Shown only when it has a name, every copy of it a string the caller may use
            // (parsers disagree on which duplicate wins).
            let mut allowed: Option<bool> = None;
            let entry = if sc.next_byte()? == b'{' {
                sc.members(d, |sc, key, d| {
                    if key.is(kind.key) {
                        let ok = sc.string_value(d)?.is_some_and(|name| {
                            self.gateway.may_call(
                                self.filter.resource,
                                &self.filter.identity,
                                kind.use_method,
                                &name,
                            )
                        });
                        allowed = Some(allowed.unwrap_or(true) && ok);
                    }
                    Some(())
                })?
            } else {
                sc.value(d)?
            };
            let allowed = allowed == Some(true);
            if allowed {
                kept.push(entry);
            } else {
                removed += 1;
            }
            Some(())
        })?;
        if removed > 0 {
            *hidden += removed;
            let all = Scanner::new(self.bytes);
            let mut array = Vec::with_capacity(span.end - span.start);
            array.push(b'[');
            for (n, e) in kept.iter().enumerate() {
                if n > 0 {
                    array.push(b',');
                }
                array.extend_from_slice(all.bytes(*e));
            }
            array.push(b']');
            cuts.push((span, array));
        }
        Some(())
    }
}

impl ListBody {
    /// How the body is carried.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Whether the host holds the response headers until [`ListBody::finish`] (a JSON body:
    /// it is rewritten whole, so its new `Content-Length` is known then).
    pub fn holds_headers(&self) -> bool {
        self.shape == Shape::Json
    }

    /// The most body bytes it holds at once (`mcp.max_list_bytes`).
    pub fn max_bytes(&self) -> usize {
        self.filter.max_bytes
    }

    /// The header changes, given the upstream's `Cache-Control` (joined if repeated).
    pub fn header_edits(&self, cache_control: Option<&str>) -> HeaderEdits {
        HeaderEdits {
            remove: if matches!(self.state, State::Refused(Unfilterable::Encoded)) {
                &["content-length", "content-encoding"]
            } else {
                &["content-length"]
            },
            cache_control: private_cache_control(cache_control),
        }
    }

    /// Whether the rest of the stream passes untouched (a host may then stop handing chunks
    /// to [`ListBody::push`] and forward them as they are).
    pub fn is_passing(&self) -> bool {
        self.state == State::Passing
    }

    /// How many entries were hidden so far.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Why the list was not forwarded, once it was refused.
    pub fn refused(&self) -> Option<Unfilterable> {
        self.refused
    }

    /// Once the answer was refused, the line for the host's log, once (it names why and the
    /// setting, never anything of the answer).
    pub fn take_refusal(&mut self) -> Option<String> {
        let why = self.refused.filter(|_| !self.reported)?;
        self.reported = true;
        let what = match why {
            Unfilterable::TooLarge => {
                alloc::format!("larger than mcp.max_list_bytes ({})", self.filter.max_bytes)
            }
            Unfilterable::Encoded => {
                String::from("compressed although the gateway asked for identity encoding")
            }
            Unfilterable::Malformed => String::from("not valid JSON"),
        };
        Some(alloc::format!(
            "a list answer was not forwarded ({}): {}; its {} list request(s) got JSON-RPC error {}",
            why.as_str(),
            what,
            self.filter.ids.len(),
            UNFILTERABLE_CODE
        ))
    }

    /// Takes the next chunk of the body; appends to `out` what goes on now.
    pub fn push(&mut self, gateway: &Gateway, chunk: &[u8], out: &mut Vec<u8>) {
        match self.state {
            State::Passing => out.extend_from_slice(chunk),
            State::Dropping => {}
            State::Refused(_) if self.shape == Shape::EventStream => self.refuse(out),
            State::Refused(_) => {}
            State::Filtering => {
                if self.buf.len().saturating_add(chunk.len()) > self.filter.max_bytes
                    && self.shape == Shape::Json
                {
                    self.buf = Vec::new();
                    self.state = State::Refused(Unfilterable::TooLarge);
                    return;
                }
                self.buf.extend_from_slice(chunk);
                if self.shape == Shape::EventStream {
                    self.events(gateway, false, out);
                }
            }
        }
    }

    /// The body ended; appends to `out` what is left to send.
    pub fn finish(&mut self, gateway: &Gateway, out: &mut Vec<u8>) {
        match (self.state, self.shape) {
            (State::Filtering, Shape::Json) => {
                let body = core::mem::take(&mut self.buf);
                match self
                    .filter
                    .filter_bytes(gateway, &body, &mut self.answered, &mut self.hidden)
                {
                    Ok(Some(bytes)) => out.extend_from_slice(&bytes),
                    Ok(None) => out.extend_from_slice(&body),
                    Err(()) => {
                        self.state = State::Refused(Unfilterable::Malformed);
                        self.refuse(out);
                    }
                }
                if self.state == State::Filtering {
                    self.state = State::Passing;
                }
            }
            (State::Filtering, Shape::EventStream) => {
                self.events(gateway, true, out);
                // An incomplete last event (clients drop it) is filtered like a whole one.
                if self.state == State::Filtering && !self.buf.is_empty() {
                    let event = core::mem::take(&mut self.buf);
                    self.event(gateway, &event, out);
                }
            }
            (State::Refused(_), _) => self.refuse(out),
            (State::Passing | State::Dropping, _) => {}
        }
    }

    /// Writes the errors for the tracked requests not yet answered, once; drops the rest.
    fn refuse(&mut self, out: &mut Vec<u8>) {
        let State::Refused(why) = self.state else {
            return;
        };
        self.state = State::Dropping;
        self.refused = Some(why);
        self.buf = Vec::new();
        let mut pending = self
            .filter
            .ids
            .iter()
            .zip(self.answered.iter())
            .filter(|(_, done)| !**done)
            .map(|((id, _), _)| ListFilter::error(id, why));
        match self.shape {
            Shape::Json => {
                let v = if self.filter.batch {
                    Value::Array(pending.collect())
                } else {
                    match pending.next() {
                        Some(v) => v,
                        None => return,
                    }
                };
                if let Ok(bytes) = serde_json::to_vec(&v) {
                    out.extend_from_slice(&bytes);
                }
            }
            Shape::EventStream => {
                for v in pending {
                    if let Ok(bytes) = serde_json::to_vec(&v) {
                        out.extend_from_slice(b"event: message\ndata: ");
                        out.extend_from_slice(&bytes);
                        out.extend_from_slice(b"\n\n");
                    }
                }
            }
        }
    }

    /// Lets go every complete event in `buf` (filtered when it answers a tracked request).
    fn events(&mut self, gateway: &Gateway, at_eof: bool, out: &mut Vec<u8>) {
        while self.state == State::Filtering {
            let Some(end) = event_end(&self.buf, &mut self.scan, at_eof) else {
                if self.buf.len() > self.filter.max_bytes {
                    self.state = State::Refused(Unfilterable::TooLarge);
                    self.refuse(out);
                }
                return;
            };
            if end > self.filter.max_bytes {
                self.state = State::Refused(Unfilterable::TooLarge);
                self.refuse(out);
                return;
            }
            let rest = self.buf.split_off(end);
            let event = core::mem::replace(&mut self.buf, rest);
            self.scan = 0;
            self.event(gateway, &event, out);
            if self.answered.iter().all(|a| *a) {
                self.state = State::Passing;
                out.append(&mut self.buf);
            }
        }
    }

    /// One SSE event (its lines and the blank line ending it): as it was, or rewritten when
    /// its data answers a tracked request.
    fn event(&mut self, gateway: &Gateway, event: &[u8], out: &mut Vec<u8>) {
        // The data, borrowed while it is one line (the usual case: no copy).
        let mut data: Option<Cow<'_, [u8]>> = None;
        let mut others: Vec<&[u8]> = Vec::new();
        for line in lines(event) {
            let (field, value) = match line.iter().position(|b| *b == b':') {
                Some(c) => (
                    line.get(..c).unwrap_or_default(),
                    line.get(c + 1..).unwrap_or_default(),
                ),
                None => (line, &[][..]),
            };
            if field == b"data" {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                data = Some(match data.take() {
                    None => Cow::Borrowed(value),
                    Some(d) => {
                        let mut d = d.into_owned();
                        d.push(b'\n');
                        d.extend_from_slice(value);
                        Cow::Owned(d)
                    }
                });
            } else if !line.is_empty() {
                others.push(line);
            }
        }
        let rewritten = data.and_then(|data| {
            self.filter
                .filter_bytes(gateway, &data, &mut self.answered, &mut self.hidden)
                .ok()
                .flatten()
        });
        let Some(json) = rewritten else {
            out.extend_from_slice(event);
            return;
        };
        for line in others {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        // One `data:` line per line of the JSON (its line breaks can only be whitespace
        // between tokens: a JSON string holds none), as the client joins them again.
        for line in lines(&json) {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
}

/// The end (exclusive) of the first complete SSE event in `buf`: just past the blank line
/// ending it. `scan` is where the first line not yet seen whole starts (kept between calls so
/// that a growing event is not scanned again). A CR at the very end of `buf` may be the first
/// half of a CRLF: it ends a line only `at_eof`.
fn event_end(buf: &[u8], scan: &mut usize, at_eof: bool) -> Option<usize> {
    let mut pos = *scan;
    loop {
        let rest = buf.get(pos..)?;
        let i = scan::line_break(rest)?;
        let term = match (rest.get(i), rest.get(i + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(b'\r'), None) if !at_eof => return None,
            _ => 1,
        };
        let line_end = pos + i + term;
        if i == 0 {
            *scan = 0;
            return Some(line_end);
        }
        pos = line_end;
        *scan = pos;
    }
}

/// The lines of one event (without their terminators; the blank last line included).
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let i = scan::line_break(rest).unwrap_or(rest.len());
        let line = rest.get(..i).unwrap_or_default();
        let term = match (rest.get(i), rest.get(i + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(_), _) => 1,
            (None, _) => 0,
        };
        rest = rest.get(i + term..).unwrap_or_default();
        Some(line)
    })
}

/// The `Cache-Control` of an answer filtered for one token: the upstream's directives,
/// without `public` and `s-maxage` (shared caches must not keep it: MCP 2026-07-28, private
/// caches are per authorization context), plus `private` unless it says `no-store` or
/// `private` already.
pub fn private_cache_control(existing: Option<&str>) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut private = false;
    for d in existing.unwrap_or("").split(',').map(str::trim) {
        let name = d.split('=').next().unwrap_or("").trim();
        if d.is_empty()
            || name.eq_ignore_ascii_case("public")
            || name.eq_ignore_ascii_case("s-maxage")
        {
            continue;
        }
        private |= name.eq_ignore_ascii_case("private") || name.eq_ignore_ascii_case("no-store");
        kept.push(d);
    }
    if !private {
        kept.insert(0, "private");
    }
    kept.join(", ")
}

/// The methods whose answers are filtered.
pub const LIST_METHODS: [&str; 4] = [
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

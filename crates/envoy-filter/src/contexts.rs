//! The proxy-wasm contexts: one root context per plugin per VM, one HTTP context per
//! request. Both are thin: the decisions are the core's, the bookkeeping is [`Filter`]'s.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

use mcp_edge_auth_core::{HeadersVerdict, OwnedBody, OwnedRequest};

use crate::filter::{Filter, Head, Phase, Step, StreamState, KICK};
use crate::host::{self, HeaderMap};

/// The configured filter of this VM, shared by the root and every HTTP context. `None`
/// until configured, or if the configuration was refused.
type Slot = Rc<RefCell<Option<Filter>>>;

/// Largest introspection response read: an answer is a small JSON object.
const MAX_INTROSPECTION_BODY: usize = 64 * 1024;

/// The root context: configuration, timers, JWKS fetches, token exchanges.
pub(crate) struct Root {
    id: u32,
    filter: Slot,
}

impl Root {
    pub fn new(id: u32) -> Root {
        Root {
            id,
            filter: Rc::new(RefCell::new(None)),
        }
    }
}

impl Context for Root {
    /// The VM is going away: what it counted since the last tick goes to Envoy first.
    fn on_done(&mut self) -> bool {
        if let Ok(slot) = self.filter.try_borrow() {
            if let Some(f) = slot.as_ref() {
                f.flush_metrics();
            }
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Ok(mut slot) = self.filter.try_borrow_mut() {
            if let Some(f) = slot.as_mut() {
                let now_ms = host::now_ms();
                if f.is_exchange_call(token) {
                    f.on_exchange_response(self.id, token, num_headers, body_size, now_ms);
                } else {
                    f.on_fetch_response(self.id, token, num_headers, body_size, now_ms);
                }
            }
        }
    }
}

impl RootContext for Root {
    /// Loads the configuration. Refusing it (returning false) makes Envoy refuse the
    /// plugin: with `fail_open: false` (the default, and Istio's `FAIL_CLOSE`) no request
    /// passes unchecked. The log names the offending field.
    fn on_configure(&mut self, _size: usize) -> bool {
        host::refresh_log_level();
        let Ok(mut slot) = self.filter.try_borrow_mut() else {
            return false;
        };
        if let Some(old) = slot.as_ref() {
            old.flush_metrics();
        }
        match Filter::build(host::plugin_configuration().as_deref()) {
            Ok(f) => {
                host::info(|| f.summary());
                *slot = Some(f);
                // Fetch remote keys now rather than on the first request.
                host::set_tick(KICK);
                true
            }
            Err(message) => {
                // Critical, not error: this is why the listener refuses traffic.
                let _ = proxy_wasm::hostcalls::log(
                    proxy_wasm::types::LogLevel::Critical,
                    &format!("refusing to start: {message}"),
                );
                *slot = None;
                false
            }
        }
    }

    fn on_tick(&mut self) {
        host::refresh_log_level();
        if let Ok(mut slot) = self.filter.try_borrow_mut() {
            if let Some(f) = slot.as_mut() {
                f.on_tick(self.id, host::now_ms());
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            filter: Rc::clone(&self.filter),
            state: Rc::new(RefCell::new(StreamState::default())),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request.
struct Stream {
    id: u32,
    filter: Slot,
    /// Shared (weakly) with the root context while the request waits for keys.
    state: Rc<RefCell<StreamState>>,
}

impl Stream {
    /// Fail closed when the filter cannot be reached (never expected: Envoy does not run a
    /// plugin whose configuration was refused).
    fn unavailable(&self) -> Action {
        host::error(|| "no usable configuration; answering 503".to_string());
        host::send_response(503, &[("retry-after", "10".to_string())], "");
        if let Ok(mut s) = self.state.try_borrow_mut() {
            s.phase = Phase::Answered;
        }
        Action::Pause
    }

    fn phase(&self) -> Phase {
        self.state.try_borrow().map_or(Phase::Answered, |s| s.phase)
    }

    /// Runs `f` with the VM's filter and this request's state; fails closed (503) when
    /// either cannot be had.
    fn with_filter(&self, f: impl FnOnce(&mut Filter, &mut StreamState) -> Action) -> Action {
        let Ok(mut slot) = self.filter.try_borrow_mut() else {
            return self.unavailable();
        };
        let Some(filter) = slot.as_mut() else {
            drop(slot);
            return self.unavailable();
        };
        let Ok(mut state) = self.state.try_borrow_mut() else {
            drop(slot);
            return self.unavailable();
        };
        f(filter, &mut state)
    }

    /// The action for the callback that decided (headers, body or trailers: `Continue` lets
    /// the request go upstream, with whatever body Envoy buffered; `Pause` holds it); a
    /// paused request is kept (`keep` gives it) for its wake-up. A request decided at once
    /// is never copied.
    fn after(
        &self,
        filter: &mut Filter,
        state: &mut StreamState,
        keep: &mut dyn FnMut() -> OwnedRequest,
        step: Step,
    ) -> Action {
        match step {
            Step::Forwarded if state.hold_body.is_some() => {
                // Headers go on; the body is held until the MCP rules decide.
                state.phase = Phase::HoldingBody;
                state.request = Some(keep());
                Action::Continue
            }
            Step::Forwarded => Action::Continue,
            Step::Answered | Step::Introspecting => Action::Pause,
            Step::Wait(wait) => {
                state.request = Some(keep());
                filter.add_waiter(self.id, Rc::downgrade(&self.state), wait);
                Action::Pause
            }
            Step::Exchange(wait) => {
                state.request = Some(keep());
                filter.add_exchange_waiter(self.id, Rc::downgrade(&self.state), wait);
                Action::Pause
            }
        }
    }

    /// A body callback (or the trailers) of a request reading its body, `size` bytes
    /// buffered so far: wait for more, or decide when it is `complete` or over the limit.
    fn read_body(&self, size: usize, complete: bool) -> Action {
        self.with_filter(|filter, state| {
            if !state.body_started {
                state.body_started = true;
                filter.body_arrived(self.id);
            }
            state.body_size = size;
            let body = if size > state.body_limit {
                OwnedBody::TooLarge
            } else if complete {
                // A body the host would not hand over is `NotRead`: the core answers 400.
                host::request_body(size).map_or(OwnedBody::NotRead, OwnedBody::Bytes)
            } else {
                return Action::Pause;
            };
            let Some(mut req) = state.request.take() else {
                // Never expected: the headers were kept when the body was asked for.
                host::error(|| "request body without its headers; answering 500".to_string());
                host::send_response(500, &[], "");
                state.phase = Phase::Answered;
                return Action::Pause;
            };
            req.body = body;
            let now_ms = host::now_ms();
            let step = req.with(|r| filter.handle(r, state, now_ms, None));
            let mut req = Some(req);
            self.after(filter, state, &mut || req.take().unwrap_or_default(), step)
        })
    }
}

impl Stream {
    /// A body callback (or the trailers) of a request whose headers went on while its body is
    /// held: keep holding (`Pause` buffers it) until it is complete or over the limit, then let
    /// it go or answer (Envoy then resets the upstream request: it never gets the body).
    fn held_body(&self, size: usize, complete: bool) -> Action {
        self.with_filter(|filter, state| {
            state.body_size = size;
            let limit = state.hold_body.unwrap_or(0);
            if size <= limit && !complete {
                return Action::Pause;
            }
            let Some(mut req) = state.request.take() else {
                return Action::Pause;
            };
            req.body = if size > limit {
                OwnedBody::TooLarge
            } else {
                // A body the host would not hand over is `NotRead`: the core answers 400.
                host::request_body(size).map_or(OwnedBody::NotRead, OwnedBody::Bytes)
            };
            let refusal = filter.check_body(&req, state.identity.as_deref());
            match refusal {
                None => {
                    if let Some((reason, cache_hit)) = state.uncounted.take() {
                        filter.count_forward(reason, cache_hit);
                    }
                    state.lists = filter.list_filter(&req, state.identity.as_ref());
                    state.phase = Phase::Forwarded;
                    Action::Continue
                }
                Some(r) => {
                    state.phase = Phase::Answered;
                    filter.answer(r);
                    Action::Pause
                }
            }
        })
    }
}

impl Context for Stream {
    /// The answer of this request's introspection call (or its failure: no headers).
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        let job = match state.introspection.take() {
            Some((t, job)) if t == token => job,
            other => {
                state.introspection = other;
                return;
            }
        };
        let status = (num_headers > 0)
            .then(|| host::headers(MapType::HttpCallResponseHeaders))
            .and_then(|h| h.into_iter().find(|(n, _)| n == ":status"))
            .and_then(|(_, v)| v.parse::<u16>().ok());
        let body = if body_size <= MAX_INTROSPECTION_BODY {
            host::call_response_body(body_size)
        } else {
            Vec::new()
        };
        let answer = status.map(|s| (s, body.as_slice()));
        let Ok(mut slot) = self.filter.try_borrow_mut() else {
            return;
        };
        let Some(filter) = slot.as_mut() else { return };
        if filter.finish_introspection(job, answer, &mut state, host::now_ms()) == Step::Forwarded {
            host::resume_request();
        }
    }
}

impl HttpContext for Stream {
    /// Decides on the headers, unless the decision needs the body (a POST to a resource
    /// with MCP rules): then the headers are paused while Envoy buffers the body, and the
    /// request is decided when it is complete (or over the limit). Every pause holds the
    /// headers back from the upstream, so nothing is forwarded before a decision.
    ///
    /// A body is only delivered to a filter that paused the headers when the plugin config
    /// sets `allow_on_headers_stop_iteration: true` (Envoy 1.35 and later). Otherwise
    /// Envoy turns the pause into "stop all iteration" and holds the body back too; the
    /// root context then answers such a request 500 after [`crate::filter::BODY_WAIT_MS`].
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let map = HeaderMap::read(MapType::HttpRequestHeaders);
        let Some(head) = Head::of(&map) else {
            // Never from Envoy: a header map the filter cannot read is refused, not guessed at.
            host::error(|| "unreadable request header map; answering 500".to_string());
            host::send_response(500, &[], "");
            if let Ok(mut s) = self.state.try_borrow_mut() {
                s.phase = Phase::Answered;
            }
            return Action::Pause;
        };
        head.with(|req| {
            self.with_filter(|filter, state| {
                let now_ms = host::now_ms();
                let keep = &mut || OwnedRequest::copy(req);
                match filter.decide_headers(req, end_of_stream, now_ms) {
                    HeadersVerdict::Decided(verdict) => {
                        let step = filter.settle(req, verdict, state, now_ms, None);
                        self.after(filter, state, keep, step)
                    }
                    HeadersVerdict::ReadBody { limit } if filter.holds_headers() => {
                        let weak = Rc::downgrade(&self.state);
                        filter.start_body(self.id, weak, keep(), limit, state, now_ms);
                        Action::Pause
                    }
                    HeadersVerdict::ReadBody { limit } => {
                        // A stock WasmPlugin / EnvoyExtensionPolicy: Envoy delivers no body to
                        // a filter that paused the headers. Check the token now, let the
                        // headers go, and hold the body until the rules decide.
                        state.hold_body = Some(limit);
                        let step = filter.handle(req, state, now_ms, None);
                        self.after(filter, state, keep, step)
                    }
                }
            })
        })
    }

    /// While the body is read: `Pause` (Envoy buffers it) until it is complete or over the
    /// limit, then decide. While paused for keys or introspection: hold it back (buffered)
    /// until the request is resumed.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.phase() {
            Phase::Forwarded => Action::Continue,
            Phase::ReadingBody => self.read_body(body_size, end_of_stream),
            Phase::HoldingBody => self.held_body(body_size, end_of_stream),
            _ => Action::Pause,
        }
    }

    /// Trailers end the body (HTTP/2, or HTTP/1 with trailers enabled).
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.phase() {
            Phase::Forwarded => Action::Continue,
            Phase::HoldingBody => {
                let size = self.state.try_borrow().map_or(0, |s| s.body_size);
                self.held_body(size, true)
            }
            Phase::ReadingBody => {
                let size = self.state.try_borrow().map_or(0, |s| s.body_size);
                self.read_body(size, true)
            }
            _ => Action::Pause,
        }
    }

    /// Adds the decision's response headers (CORS) to the upstream's response: replacing
    /// any the upstream set, except `Vary`, which lists and so is appended to. When the
    /// request had list requests, the core says whether their answer is filtered and how the
    /// headers change; a JSON answer's headers are then held until its body is rewritten.
    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (headers, lists) = match self.state.try_borrow_mut() {
            Ok(mut s) if s.phase == Phase::Forwarded => {
                (std::mem::take(&mut s.response_headers), s.lists.take())
            }
            _ => return Action::Continue,
        };
        for (name, value) in &headers {
            if *name == "vary" {
                host::add_header(MapType::HttpResponseHeaders, name, value);
            } else {
                host::set_header(MapType::HttpResponseHeaders, name, value);
            }
        }
        let Some(lists) = lists else {
            return Action::Continue;
        };
        let all = host::headers(MapType::HttpResponseHeaders);
        let status = all
            .iter()
            .find(|(n, _)| n == ":status")
            .and_then(|(_, v)| v.parse::<u16>().ok())
            .unwrap_or(0);
        let pairs: Vec<(&str, &str)> = all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let Some((body, edits)) = (*lists).open(status, &pairs) else {
            return Action::Continue;
        };
        for name in edits.remove {
            host::remove_header(MapType::HttpResponseHeaders, name);
        }
        host::set_header(
            MapType::HttpResponseHeaders,
            "cache-control",
            &edits.cache_control,
        );
        // A stock WasmPlugin (no `allow_on_headers_stop_iteration`): Envoy would hold the
        // body too if the headers paused, and never deliver it. The headers then go on at once
        // (without Content-Length: chunked) and only the body is held.
        let may_hold = self
            .filter
            .try_borrow()
            .ok()
            .and_then(|f| f.as_ref().map(Filter::holds_headers))
            .unwrap_or(false);
        let hold = body.holds_headers() && !end_of_stream && may_hold;
        if let Ok(mut s) = self.state.try_borrow_mut() {
            s.list_body = Some(body);
            s.list_headers_held = hold;
        }
        if hold {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// A filtered answer's body: a JSON one is held (`Pause` buffers it) until it is complete
    /// and then replaced by the core's rewrite; an event stream's chunks go on at once, each
    /// replaced by what the core lets go of it (complete events; the rest waits for its end).
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return Action::Continue;
        };
        let Some(body) = state.list_body.as_mut() else {
            return Action::Continue;
        };
        if body.is_passing() {
            return Action::Continue;
        }
        let json = body.holds_headers();
        if json && !end_of_stream && body_size <= body.max_bytes() {
            return Action::Pause;
        }
        let filter = self.filter.try_borrow();
        let Some(filter) = filter.as_ref().ok().and_then(|f| f.as_ref()) else {
            // Never expected (the VM is single-threaded): never forward a list unfiltered.
            host::set_response_body(body_size, &[]);
            return Action::Continue;
        };
        let chunk = host::response_body(body_size);
        let mut out = Vec::new();
        body.push(filter.gateway(), &chunk, &mut out);
        if end_of_stream {
            body.finish(filter.gateway(), &mut out);
        }
        if let Some(line) = body.take_refusal() {
            host::warn(|| format!("mcp-edge-auth: {line}"));
        }
        if out != chunk {
            host::set_response_body(body_size, &out);
        }
        if !json {
            Action::Continue
        } else if end_of_stream {
            // Only while the headers are held: once they went on, Envoy refuses header
            // changes, and the SDK panics on the refusal (which would kill the VM).
            if state.list_headers_held {
                host::set_header(
                    MapType::HttpResponseHeaders,
                    "content-length",
                    &out.len().to_string(),
                );
            }
            Action::Continue
        } else {
            // Over the limit: refused; what came so far is dropped, the rest is too.
            Action::Pause
        }
    }
}

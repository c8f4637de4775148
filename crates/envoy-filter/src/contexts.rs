//! The proxy-wasm contexts: one root context per plugin per VM, one HTTP context per
//! request. Both are thin: the decisions are the core's, the bookkeeping is [`Filter`]'s.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

use crate::filter::{Filter, OwnedRequest, Phase, Step, StreamState, KICK};
use crate::host;

/// The configured filter of this VM, shared by the root and every HTTP context. `None`
/// until configured, or if the configuration was refused.
type Slot = Rc<RefCell<Option<Filter>>>;

/// Largest introspection response read: an answer is a small JSON object.
const MAX_INTROSPECTION_BODY: usize = 64 * 1024;

/// The root context: configuration, timers, JWKS fetches.
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
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Ok(mut slot) = self.filter.try_borrow_mut() {
            if let Some(f) = slot.as_mut() {
                f.on_fetch_response(self.id, token, num_headers, body_size, host::now_ms());
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

    /// Decides the request and carries the decision out; the action for the headers
    /// callback (`Continue` lets it go upstream).
    fn decide(&self, req: OwnedRequest) -> Action {
        let now_ms = host::now_ms();
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
        match filter.handle(&req, &mut state, now_ms, false) {
            Step::Forwarded => Action::Continue,
            Step::Answered | Step::Introspecting => Action::Pause,
            Step::Wait(issuer) => {
                state.request = Some(req);
                filter.add_waiter(self.id, Rc::downgrade(&self.state), issuer, now_ms);
                Action::Pause
            }
        }
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
    /// Every decision is made here, on the headers. Pausing makes Envoy hold the whole
    /// request (proxy-wasm hosts turn a paused headers callback into "stop all iteration"),
    /// so nothing reaches the upstream, body included, until the request is resumed.
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.decide(OwnedRequest::read())
    }

    /// Envoy does not deliver the body while the headers are paused; should a host do so,
    /// hold it back until the request is decided.
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        match self.phase() {
            Phase::Forwarded => Action::Continue,
            _ => Action::Pause,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.phase() {
            Phase::Forwarded => Action::Continue,
            _ => Action::Pause,
        }
    }

    /// Adds the decision's response headers (CORS) to the upstream's response: replacing
    /// any the upstream set, except `Vary`, which lists and so is appended to.
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = match self.state.try_borrow_mut() {
            Ok(mut s) if s.phase == Phase::Forwarded => std::mem::take(&mut s.response_headers),
            _ => return Action::Continue,
        };
        for (name, value) in &headers {
            if *name == "vary" {
                host::add_header(MapType::HttpResponseHeaders, name, value);
            } else {
                host::set_header(MapType::HttpResponseHeaders, name, value);
            }
        }
        Action::Continue
    }
}

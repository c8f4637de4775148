//! Counters through the proxy-wasm metrics ABI.
//!
//! Every VM defines the same names; Envoy keeps one stat per name, so the counters add up
//! over all workers. Envoy puts custom Wasm metrics under `wasmcustom.` in `/stats`
//! (`envoy_wasmcustom_mcp_edge_auth_…` in `/stats/prometheus`).
//!
//! A request only adds to counts kept in the VM; the root context's tick hands them to Envoy
//! ([`Metrics::flush`], at least once a second), so a cache hit makes no metrics host call.
//! Envoy itself flushes stats to its sinks every 5 s by default; `/stats` lags by at most
//! one tick.

use std::cell::Cell;

use mcp_edge_auth_core::exchange;
use mcp_edge_auth_core::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Prefix of every metric name.
pub(crate) const PREFIX: &str = "mcp_edge_auth.";

/// The metric name for a decision ([`Reason::counter_name`], the same on every host).
pub(crate) fn reason_name(r: Reason) -> String {
    format!("{PREFIX}{}", r.counter_name())
}

/// One counter: the id Envoy gave it (a failed definition leaves `None`: counting is never
/// worth failing a request for) and what this VM counted since the last flush.
#[derive(Debug, Default)]
struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

/// The counters this VM defined.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    reasons: Vec<(Reason, Counter)>,
    jwks_fetch_ok: Counter,
    jwks_fetch_failed: Counter,
    token_cache_hit: Counter,
    token_cache_miss: Counter,
    body_unavailable: Counter,
    /// Token exchange: issued, failed, cache hits ([`exchange::COUNTERS`]).
    exchange: [Counter; 3],
}

/// Requests answered 500 because Envoy withheld their body from the filter (the plugin
/// config lacks `allow_on_headers_stop_iteration: true`). An Envoy-only refusal, so not a
/// core [`Reason`]; named like one so that the `reason` tag picks it up.
pub(crate) const BODY_UNAVAILABLE: &str = "requests_denied.body_unavailable";

fn counter(name: &str) -> Counter {
    Counter {
        id: hostcalls::define_metric(MetricType::Counter, name).ok(),
        pending: Cell::new(0),
    }
}

fn bump(c: &Counter) {
    c.pending.set(c.pending.get().saturating_add(1));
}

impl Counter {
    fn flush(&self) {
        let n = self.pending.replace(0);
        if let (Some(id), true) = (self.id, n > 0) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

impl Metrics {
    /// Defines every counter up front, so that all of them show (at 0) in `/stats` from the
    /// start and dashboards need no special case for "never happened".
    pub fn define() -> Metrics {
        Metrics {
            reasons: Reason::ALL
                .iter()
                .map(|r| (*r, counter(&reason_name(*r))))
                .collect(),
            jwks_fetch_ok: counter(&format!("{PREFIX}jwks_fetch_ok")),
            jwks_fetch_failed: counter(&format!("{PREFIX}jwks_fetch_failed")),
            token_cache_hit: counter(&format!("{PREFIX}token_cache_hit")),
            token_cache_miss: counter(&format!("{PREFIX}token_cache_miss")),
            body_unavailable: counter(&format!("{PREFIX}{BODY_UNAVAILABLE}")),
            exchange: exchange::COUNTERS.map(|n| counter(&format!("{PREFIX}{n}"))),
        }
    }

    /// Hands what this VM counted since the last flush to Envoy (one host call per counter
    /// that moved).
    pub fn flush(&self) {
        for (_, c) in &self.reasons {
            c.flush();
        }
        for c in [
            &self.jwks_fetch_ok,
            &self.jwks_fetch_failed,
            &self.token_cache_hit,
            &self.token_cache_miss,
            &self.body_unavailable,
        ]
        .into_iter()
        .chain(&self.exchange)
        {
            c.flush();
        }
    }

    /// A token exchange ended: issued (`ok`) or not.
    pub fn exchange(&self, ok: bool) {
        if let Some(c) = self.exchange.get(usize::from(!ok)) {
            bump(c);
        }
    }

    /// A forward's upstream token came from the exchange cache.
    pub fn exchange_cache_hit(&self) {
        if let Some(c) = self.exchange.get(2) {
            bump(c);
        }
    }

    pub fn decision(&self, r: Reason) {
        if let Some((_, c)) = self.reasons.iter().find(|(x, _)| *x == r) {
            bump(c);
        }
    }

    pub fn fetch(&self, ok: bool) {
        bump(if ok {
            &self.jwks_fetch_ok
        } else {
            &self.jwks_fetch_failed
        });
    }

    pub fn body_unavailable(&self) {
        bump(&self.body_unavailable);
    }

    pub fn cache(&self, hit: bool) {
        bump(if hit {
            &self.token_cache_hit
        } else {
            &self.token_cache_miss
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            reason_name(Reason::Allowed),
            "mcp_edge_auth.requests_allowed"
        );
        assert_eq!(
            reason_name(Reason::Expired),
            "mcp_edge_auth.requests_denied.expired"
        );
        assert_eq!(
            reason_name(Reason::Metadata),
            "mcp_edge_auth.metadata_served"
        );
        assert_eq!(
            reason_name(Reason::BadBody),
            "mcp_edge_auth.requests_denied.bad_body"
        );
        assert_eq!(
            reason_name(Reason::BodyTooLarge),
            "mcp_edge_auth.requests_denied.body_too_large"
        );
        let mut all: Vec<String> = Reason::ALL.iter().map(|r| reason_name(*r)).collect();
        all.push(format!("{PREFIX}{BODY_UNAVAILABLE}"));
        all.sort();
        all.dedup();
        assert_eq!(all.len(), Reason::ALL.len() + 1, "names are distinct");
    }
}

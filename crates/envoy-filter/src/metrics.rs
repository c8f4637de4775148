//! Counters through the proxy-wasm metrics ABI.
//!
//! Every VM defines the same names; Envoy keeps one stat per name, so the counters add up
//! over all workers. Envoy puts custom Wasm metrics under `wasmcustom.` in `/stats`
//! (`envoy_wasmcustom_mcp_edge_auth_…` in `/stats/prometheus`).

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

/// Ids of the counters this VM defined (a failed definition leaves `None`: counting is
/// never worth failing a request for).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    reasons: Vec<(Reason, Option<u32>)>,
    jwks_fetch_ok: Option<u32>,
    jwks_fetch_failed: Option<u32>,
    token_cache_hit: Option<u32>,
    token_cache_miss: Option<u32>,
    body_unavailable: Option<u32>,
    /// Token exchange: issued, failed, cache hits ([`exchange::COUNTERS`]).
    exchange: [Option<u32>; 3],
}

/// Requests answered 500 because Envoy withheld their body from the filter (the plugin
/// config lacks `allow_on_headers_stop_iteration: true`). An Envoy-only refusal, so not a
/// core [`Reason`]; named like one so that the `reason` tag picks it up.
pub(crate) const BODY_UNAVAILABLE: &str = "requests_denied.body_unavailable";

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
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

    /// A token exchange ended: issued (`ok`) or not.
    pub fn exchange(&self, ok: bool) {
        bump(self.exchange.get(usize::from(!ok)).copied().flatten());
    }

    /// A forward's upstream token came from the exchange cache.
    pub fn exchange_cache_hit(&self) {
        bump(self.exchange.get(2).copied().flatten());
    }

    pub fn decision(&self, r: Reason) {
        bump(
            self.reasons
                .iter()
                .find(|(x, _)| *x == r)
                .and_then(|(_, id)| *id),
        );
    }

    pub fn fetch(&self, ok: bool) {
        bump(if ok {
            self.jwks_fetch_ok
        } else {
            self.jwks_fetch_failed
        });
    }

    pub fn body_unavailable(&self) {
        bump(self.body_unavailable);
    }

    pub fn cache(&self, hit: bool) {
        bump(if hit {
            self.token_cache_hit
        } else {
            self.token_cache_miss
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

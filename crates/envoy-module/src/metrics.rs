//! Envoy counters, with the Wasm filter's names (`crates/envoy-filter/src/metrics.rs`)
//! under the dynamic-module prefix: `dynamicmodulescustom.mcp_edge_auth.*` (Envoy's default
//! `metrics_namespace`) instead of `wasmcustom.mcp_edge_auth.*`.
//!
//! Defined once per filter config while Envoy creates it (stat creation is frozen after);
//! a counter Envoy would not define is simply not counted.

use mcp_edge_auth_core::exchange;
use mcp_edge_auth_core::Reason;

use crate::abi::{ConfigRef, Filter};

/// Every name starts with this, as in the Wasm filter.
const PREFIX: &str = "mcp_edge_auth.";

/// The counter of a decision ([`Reason::counter_name`], the same on every host).
pub(crate) fn reason_name(r: Reason) -> String {
    format!("{PREFIX}{}", r.counter_name())
}

/// Counter ids (`None`: not defined).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    reasons: Vec<(Reason, Option<usize>)>,
    jwks_fetch_ok: Option<usize>,
    jwks_fetch_failed: Option<usize>,
    token_cache_hit: Option<usize>,
    token_cache_miss: Option<usize>,
    /// Token exchange: issued, failed, cache hits ([`exchange::COUNTERS`]).
    exchange: [Option<usize>; 3],
}

impl Metrics {
    /// Defines every counter (in `on_http_filter_config_new`).
    pub fn define(envoy: ConfigRef) -> Metrics {
        let counter = |suffix: &str| envoy.define_counter(&format!("{PREFIX}{suffix}"));
        Metrics {
            reasons: Reason::ALL
                .iter()
                .map(|r| (*r, envoy.define_counter(&reason_name(*r))))
                .collect(),
            jwks_fetch_ok: counter("jwks_fetch_ok"),
            jwks_fetch_failed: counter("jwks_fetch_failed"),
            token_cache_hit: counter("token_cache_hit"),
            token_cache_miss: counter("token_cache_miss"),
            exchange: exchange::COUNTERS.map(counter),
        }
    }

    /// A token exchange ended (main thread): issued (`ok`) or not.
    pub fn exchange(&self, envoy: ConfigRef, ok: bool) {
        if let Some(id) = self.exchange.get(usize::from(!ok)).copied().flatten() {
            envoy.increment_counter(id);
        }
    }

    /// A forward's upstream token came from the exchange cache.
    pub fn exchange_cache_hit(&self, envoy: &Filter<'_>) {
        if let Some(id) = self.exchange.get(2).copied().flatten() {
            envoy.increment_counter(id);
        }
    }

    /// A decision carried out on a stream.
    pub fn decision(&self, envoy: &Filter<'_>, r: Reason) {
        if let Some(id) = self
            .reasons
            .iter()
            .find(|(x, _)| *x == r)
            .and_then(|(_, id)| *id)
        {
            envoy.increment_counter(id);
        }
    }

    /// An allowed request: its token came from the cache, or was verified.
    pub fn cache(&self, envoy: &Filter<'_>, hit: bool) {
        let id = if hit {
            self.token_cache_hit
        } else {
            self.token_cache_miss
        };
        if let Some(id) = id {
            envoy.increment_counter(id);
        }
    }

    /// A JWKS fetch attempt finished (main thread).
    pub fn fetch(&self, envoy: ConfigRef, ok: bool) {
        let id = if ok {
            self.jwks_fetch_ok
        } else {
            self.jwks_fetch_failed
        };
        if let Some(id) = id {
            envoy.increment_counter(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_wasm_filters() {
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
        let mut all: Vec<String> = Reason::ALL.iter().map(|r| reason_name(*r)).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), Reason::ALL.len(), "names are distinct");
    }
}

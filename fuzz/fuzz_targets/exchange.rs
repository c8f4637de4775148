//! Token exchange (RFC 8693) under arbitrary sequences of requests, token endpoint answers
//! (any status, any body), failures, wake-ups, cancellations and time. The client tokens are
//! opaque and introspected (a fixed active answer), so every request reaches the exchange.
//! Never a panic; a forward carries exactly one upstream `Authorization`, `Bearer` plus an
//! `access_token` some 200 answer gave, never a client token; every refusal is a 401, 403 or
//! 503 with visible-ASCII headers.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_core::crypto::default_provider;
use mcp_edge_auth_core::exchange::{ExchangeOutcome, ExchangeWait};
use mcp_edge_auth_core::keys::schedule::Failure;
use mcp_edge_auth_core::{Begin, Config, Decision, Exchanges, Gateway, KeyStore, Request, Verdict};

const CONFIG: &str = r#"{"resources":[
 {"resource":"https://mcp.example.com/mcp","authorization_servers":["https://as.example.com"],
  "issuers":[{"issuer":"https://as.example.com",
    "introspection":{"http_uri":{"uri":"https://as.example.com/introspect"},"client_id":"gw","client_secret":"s"}}],
  "upstream_token":{"http_uri":{"uri":"https://as.example.com/token","timeout_ms":500},
    "client_id":"gw","client_secret":"s","audience":["urn:up"],"retry_after_seconds":4}}
],"token_cache":{"max_entries":4}}"#;

const NOW: u64 = 1_800_000_000;
/// Valid far longer than 64 steps can advance the clock (64 × 655 s).
const ACTIVE: &[u8] = br#"{"active":true,"aud":"https://mcp.example.com/mcp","exp":1801000000}"#;

#[derive(Arbitrary, Debug)]
enum Step<'a> {
    Request(u8),
    Answer { status: u16, body: &'a [u8] },
    Fail(u8),
    TooLarge,
    Advance(u16),
    Wake,
    Cancel(u8),
}

fn check_refusal(status: u16, headers: &[(&'static str, String)]) {
    assert!(matches!(status, 401 | 403 | 503), "status {status}");
    for (_, v) in headers {
        assert!(v.bytes().all(|b| (0x20..0x7f).contains(&b)), "{v:?}");
    }
}

fuzz_target!(|steps: Vec<Step<'_>>| {
    let config = Config::from_json(CONFIG.as_bytes()).expect("fixed config");
    let keys = KeyStore::new(&config, Box::new(default_provider())).expect("fixed config");
    let mut ex = Exchanges::new(&config);
    let gw = Gateway::new(config);
    let mut cache = gw.new_cache();
    let mut now_ms = NOW * 1000;
    let mut sent = Vec::new();
    let mut issued: Vec<String> = Vec::new();
    let mut paused: Vec<(ExchangeWait, u8)> = Vec::new();

    let mut decide = |n: u8,
                      previous: Option<ExchangeWait>,
                      now_ms: u64,
                      ex: &mut Exchanges,
                      issued: &[String]| {
        let token = format!("opaque-client-token-{n}");
        let auth = format!("Bearer {token}");
        let headers = [("authorization", auth.as_str())];
        let req = Request::new("GET", "https", "mcp.example.com", "/mcp", &headers);
        let need = match gw.decide(&req, now_ms / 1000, &keys, &mut cache) {
            Verdict::Introspect(job) => {
                match gw.resume_introspection(job, Some((200, ACTIVE)), now_ms / 1000, &mut cache) {
                    Decision::Exchange(need) => need,
                    other => panic!("an active token needs an exchange: {other:?}"),
                }
            }
            Verdict::Exchange(need) => need,
            other => panic!("unexpected verdict {other:?}"),
        };
        match ex.begin(need, previous, now_ms) {
            Begin::Forward { forward, .. } => {
                let auths: Vec<&String> = forward
                    .add_headers
                    .iter()
                    .filter(|(h, _)| h == "authorization")
                    .map(|(_, v)| v)
                    .collect();
                assert_eq!(auths.len(), 1, "{forward:?}");
                let value = auths[0].strip_prefix("Bearer ").expect("Bearer");
                assert!(issued.iter().any(|t| t == value), "a token no answer gave");
                assert!(!value.contains(&token), "the client's token went upstream");
                assert!(forward.remove_headers.iter().any(|h| h == "authorization"));
                None
            }
            Begin::Respond(r) => {
                check_refusal(r.status, &r.headers);
                None
            }
            Begin::Paused(w) => Some((w, n)),
        }
    };

    for step in steps.into_iter().take(64) {
        match step {
            Step::Request(n) => {
                if let Some(p) = decide(n % 4, None, now_ms, &mut ex, &issued) {
                    paused.push(p);
                }
            }
            Step::Answer { status, body } => {
                while let Some(call) = ex.poll_send() {
                    assert!(!format!("{call:?}").contains("opaque-client-token"));
                    sent.push(call.id);
                }
                if let Some(id) = sent.pop() {
                    // What a 200 may hand out (the oracle for forwards).
                    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) {
                        if let Some(t) = doc.get("access_token").and_then(|t| t.as_str()) {
                            issued.push(t.to_string());
                        }
                    }
                    let _ =
                        ex.handle_response(id, ExchangeOutcome::Response { status, body }, now_ms);
                }
            }
            Step::Fail(k) => {
                while let Some(call) = ex.poll_send() {
                    sent.push(call.id);
                }
                if let Some(id) = sent.pop() {
                    let f = [
                        Failure::Timeout,
                        Failure::Connection,
                        Failure::NotSent,
                        Failure::AddressNotAllowed,
                    ];
                    let failure = f[usize::from(k) % f.len()];
                    let _ = ex.handle_response(id, ExchangeOutcome::Failed(failure), now_ms);
                }
            }
            Step::TooLarge => {
                if let Some(id) = sent.pop() {
                    let _ = ex.handle_response(id, ExchangeOutcome::TooLarge, now_ms);
                }
            }
            Step::Advance(ms) => now_ms += u64::from(ms) * 10,
            Step::Wake => {
                while ex.poll_overdue(now_ms).is_some() {}
                while let Some(w) = ex.poll_wake(now_ms) {
                    if let Some(pos) = paused.iter().position(|(p, _)| *p == w) {
                        let (_, n) = paused.swap_remove(pos);
                        if let Some(p) = decide(n, Some(w), now_ms, &mut ex, &issued) {
                            paused.push(p);
                        }
                    }
                }
            }
            Step::Cancel(i) => {
                if !paused.is_empty() {
                    let (w, _) = paused.swap_remove(usize::from(i) % paused.len());
                    ex.cancel(w);
                }
            }
        }
    }
});

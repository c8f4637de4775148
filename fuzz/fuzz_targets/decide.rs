//! The full decision on arbitrary requests (method, path incl. well-known paths, headers,
//! body), against a config with MCP rules, an inline key and introspection. Checks that no
//! response header carries anything but visible ASCII, and that no request is allowed
//! without a token the fuzzer cannot forge.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_core::crypto::default_provider;
use mcp_edge_auth_core::{Body, Config, Gateway, KeyStore, Reason, Request, Verdict};

const CONFIG: &str = r#"{"resources":[
 {"resource":"https://mcp.example.com/mcp","authorization_servers":["https://as.example.com"],"required_scopes":["mcp:read"],
  "allowed_origins":["https://app.example.com"],
  "claim_to_headers":[{"header_name":"x-mcp-subject","claim_name":"sub"}],
  "mcp":{"max_body_bytes":4096,"rules":[{"method":"tools/call","name":"admin_*","scopes":["mcp:admin"]}]},
  "issuers":[{"issuer":"https://as.example.com","local_jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},
    "introspection":{"http_uri":{"uri":"https://as.example.com/introspect"},"client_id":"gw","client_secret":"s"}}]},
 {"resource":"https://mcp.example.com/","authorization_servers":["https://as.example.com"],
  "issuers":[{"issuer":"https://as.example.com","remote_jwks":{"http_uri":{"uri":"https://as.example.com/jwks"}}}]}
]}"#;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: &'a str,
    authority: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<&'a [u8]>,
    now: u64,
    introspection_answer: Option<(u16, &'a [u8])>,
}

fuzz_target!(|input: Input<'_>| {
    let config = Config::from_json(CONFIG.as_bytes()).expect("fixed config");
    let keys = KeyStore::new(&config, Box::new(default_provider())).expect("fixed config");
    let gw = Gateway::new(config);
    let mut cache = gw.new_cache();
    let mut req = Request::new(
        input.method,
        "https",
        input.authority,
        input.path,
        &input.headers,
    );
    if gw.body_limit(&req).is_some() {
        req.body = input.body.map_or(Body::TooLarge, Body::Bytes);
    }
    let v = gw.decide(&req, input.now, &keys, &mut cache);
    let v = match v {
        Verdict::Introspect(job) => gw
            .resume_introspection(job, input.introspection_answer, input.now, &mut cache)
            .into(),
        other => other,
    };
    match v {
        Verdict::Respond(r) => {
            for (_, value) in &r.headers {
                assert!(
                    value.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "{value:?}"
                );
            }
        }
        Verdict::Forward(f) => {
            // The only ways in: an unprotected path (none here: unmatched requests are denied)
            // or an introspection answer the fuzzer wrote (it plays the authorization server).
            assert_eq!(f.reason, Reason::Allowed);
            assert!(
                input.introspection_answer.is_some(),
                "allowed without introspection: {f:?}"
            );
        }
        Verdict::Exchange(_) => panic!("no resource of this config has upstream_token"),
        Verdict::AwaitKeys(_) | Verdict::VerifySignature(_) | Verdict::Introspect(_) => {}
    }
});

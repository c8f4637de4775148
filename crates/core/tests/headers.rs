//! `Gateway::decide_headers`: what hosts that see the headers before the body (Envoy) can
//! answer at once, and when they must read the body first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::{HeadersVerdict, OwnedBody, OwnedRequest, Reason, Request, Verdict};
use serde_json::json;

fn world() -> World {
    let ed = Ed::new(1, "k1");
    let other = Ed::new(99, "k-other");
    World::new(&config(
        &[ed.jwk()],
        &[other.jwk()],
        json!({"mcp": {"rules": [{"method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"]}]}}),
    ))
}

fn request(method: &str, headers: &[(&str, &str)]) -> OwnedRequest {
    let req = Request::new(method, "https", "mcp.example.com", "/mcp", headers);
    OwnedRequest::copy(&req)
}

fn at_headers(w: &mut World, req: &OwnedRequest, eos: bool) -> Option<(u16, Reason)> {
    match req.with(|r| w.gw.decide_headers(r, eos, NOW, &w.keys, &mut w.cache)) {
        HeadersVerdict::Decided(Verdict::Respond(r)) => Some((r.status, r.reason)),
        HeadersVerdict::Decided(other) => panic!("{other:?}"),
        HeadersVerdict::ReadBody { limit } => {
            assert_eq!(limit, 65536);
            None
        }
    }
}

#[test]
fn what_is_answered_before_the_body() {
    let mut w = world();
    let token = Ed::new(1, "k1").token(json!({}));
    let auth = format!("Bearer {token}");
    // A GET needs no body: decided at once (a valid token passes).
    let get = request("GET", &[("authorization", &auth)]);
    assert!(matches!(
        get.with(|r| w.gw.decide_headers(r, false, NOW, &w.keys, &mut w.cache)),
        HeadersVerdict::Decided(Verdict::Forward(_))
    ));
    // A POST with a token: the body decides.
    let post = request("POST", &[("authorization", &auth)]);
    assert_eq!(at_headers(&mut w, &post, false), None);
    let small = request(
        "POST",
        &[("authorization", &auth), ("content-length", "100")],
    );
    assert_eq!(at_headers(&mut w, &small, false), None);
    // No token, or a malformed header: the body cannot change the answer.
    assert_eq!(
        at_headers(&mut w, &request("POST", &[]), false),
        Some((401, Reason::Missing))
    );
    assert_eq!(
        at_headers(
            &mut w,
            &request("POST", &[("authorization", "Bearer a b")]),
            false
        ),
        Some((400, Reason::Malformed))
    );
    // A declared length over the limit: 413 without reading a byte; still 401 first.
    let big = request(
        "POST",
        &[("authorization", &auth), ("content-length", "65537")],
    );
    assert_eq!(
        at_headers(&mut w, &big, false),
        Some((413, Reason::BodyTooLarge))
    );
    let huge = request(
        "POST",
        &[
            ("authorization", &auth),
            ("content-length", "99999999999999999999999"),
        ],
    );
    assert_eq!(
        at_headers(&mut w, &huge, false),
        None,
        "not a number we can read: read the body"
    );
    assert_eq!(
        at_headers(
            &mut w,
            &request("POST", &[("content-length", "65537")]),
            false
        ),
        Some((401, Reason::Missing))
    );
    let twice = request(
        "POST",
        &[
            ("authorization", &auth),
            ("content-length", "65537"),
            ("content-length", "65537"),
        ],
    );
    assert_eq!(at_headers(&mut w, &twice, false), None);
    // No body at all (end of stream with the headers): decided on an empty one.
    assert_eq!(
        at_headers(&mut w, &post, true),
        Some((400, Reason::BadBody))
    );
}

#[test]
fn the_owned_body_reaches_the_core() {
    let mut w = world();
    let token = Ed::new(1, "k1").token(json!({}));
    let auth = format!("Bearer {token}");
    let mut req = request("POST", &[("authorization", &auth)]);
    let mut decide =
        |req: &OwnedRequest| match req.with(|r| w.gw.decide(r, NOW, &w.keys, &mut w.cache)) {
            Verdict::Respond(r) => (r.status, r.reason),
            Verdict::Forward(f) => (200, f.reason),
            other => panic!("{other:?}"),
        };
    req.body = OwnedBody::Bytes(b"not json".to_vec());
    assert_eq!(decide(&req), (400, Reason::BadBody));
    req.body = OwnedBody::Bytes(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset"}}"#
            .to_vec(),
    );
    assert_eq!(decide(&req), (403, Reason::Scope));
    req.body = OwnedBody::Bytes(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec());
    assert_eq!(decide(&req), (200, Reason::Allowed));
    req.body = OwnedBody::TooLarge;
    assert_eq!(decide(&req), (413, Reason::BodyTooLarge));
    req.body = OwnedBody::NotRead;
    assert_eq!(decide(&req), (400, Reason::BadBody));
    // Its Debug never shows a header value.
    assert!(!format!("{req:?}").contains(&token));
}

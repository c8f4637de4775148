//! The request → verdict pipeline.
//!
//! Order matters and is deliberate: metadata and routing first (no token needed), then the
//! browser `Origin` check, then credentials; then the verified-token cache; then the cheap
//! checks on the unverified token (format, issuer, algorithm, `typ`, time, audience) so that
//! garbage costs no signature check; then keys, and the signature last. Every refusal uses a
//! fixed description; nothing from the request is echoed into a header.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use serde_json::Value;

use crate::audience::{self, Audience};
use crate::bearer::{self, Bearer};
use crate::cache::{TokenCache, TokenHash, VerifiedToken};
use crate::challenge;
use crate::claims::{self, ClaimError};
use crate::config::{Config, Resource, Unmatched};
use crate::crypto::{Algorithm, Verification, VerifyInput};
use crate::exchange::ExchangeNeed;
use crate::explain::{Check, NoTrace, Step, Trace};
use crate::http::{Body, Forward, Identity, Reason, Request, Response};
use crate::jws;
use crate::keys::schedule::{KeyWait, Refusal as KeyRefusal};
use crate::keys::{IssuerId, KeyState, KeyStore};
use crate::mcp;
use crate::metadata;
use crate::uri;

/// At most this many keys are tried for a token without `kid`.
const MAX_CANDIDATES: usize = 8;

/// What the host does next.
#[derive(Debug)]
pub enum Verdict {
    /// Send this response; do not forward.
    Respond(Response),
    /// Forward upstream with these changes.
    Forward(Forward),
    /// The request needs keys this issuer does not have yet: hand this to
    /// [`KeySchedule::wait`](crate::keys::schedule::KeySchedule::wait), which pauses it
    /// until a fetch finishes (then decide it again) or says what to answer instead.
    AwaitKeys(KeyWait),
    /// Verify this signature with the host's own (asynchronous) crypto, then call
    /// [`Gateway::resume`].
    VerifySignature(SignatureJob),
    /// The token is opaque: POST this RFC 7662 introspection request, then call
    /// [`Gateway::resume_introspection`] with the answer (or `None` if the call failed).
    Introspect(IntrospectionJob),
    /// The request may go once it carries a token of its own for the upstream (the
    /// resource's `upstream_token`): hand this to [`Exchanges::begin`](crate::Exchanges::begin).
    Exchange(ExchangeNeed),
}

/// The end of a decision: answer, or forward. What [`Gateway::resume`] and
/// [`Gateway::resume_introspection`] return: a resumed decision never asks for more work.
#[derive(Debug)]
pub enum Decision {
    /// Send this response; do not forward.
    Respond(Response),
    /// Forward upstream with these changes.
    Forward(Forward),
    /// Forward once the upstream token is there ([`Verdict::Exchange`]).
    Exchange(ExchangeNeed),
}

impl From<Decision> for Verdict {
    fn from(d: Decision) -> Verdict {
        match d {
            Decision::Respond(r) => Verdict::Respond(r),
            Decision::Forward(f) => Verdict::Forward(f),
            Decision::Exchange(n) => Verdict::Exchange(n),
        }
    }
}

/// What [`Gateway::decide_headers`] found. (Lives on one hook's stack for a moment; boxing
/// the verdict to shrink it would cost an allocation on the hot path.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum HeadersVerdict {
    /// The verdict: the body cannot change it.
    Decided(Verdict),
    /// Read the body, up to `limit` bytes (more: [`Body::TooLarge`]), then decide.
    ReadBody {
        /// The most to read.
        limit: usize,
    },
}

/// An RFC 7662 introspection request for the host to send.
///
/// `body` holds the token: never log it. (`Debug` redacts it.)
#[derive(Clone)]
pub struct IntrospectionJob {
    /// The issuer whose endpoint answers.
    pub issuer: IssuerId,
    /// Envoy cluster, when configured.
    pub cluster: Option<String>,
    /// Full endpoint URL (for `fetch`).
    pub uri: String,
    /// `:authority` of the endpoint.
    pub authority: String,
    /// `:path` of the endpoint.
    pub path: String,
    /// Timeout in milliseconds.
    pub timeout_ms: u32,
    /// Request headers: content type, accept and client authentication.
    pub headers: Vec<(&'static str, String)>,
    /// The form body: `token=…&token_type_hint=access_token`.
    pub body: String,
    pending: Pending,
}

impl core::fmt::Debug for IntrospectionJob {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IntrospectionJob")
            .field("issuer", &self.issuer)
            .field("uri", &self.uri)
            .field("body", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What the gateway knows once a token passed every check but the signature.
#[derive(Debug, Clone)]
struct Pending {
    resource: usize,
    hash: TokenHash,
    /// The token, for its cache entry (never logged, never in a verdict).
    token: Box<str>,
    identity: Identity,
    claim_headers: Vec<(String, String)>,
    expires_at: u64,
    base: ForwardBase,
}

/// A signature for the host to verify.
#[derive(Debug, Clone)]
pub struct SignatureJob {
    /// The issuer whose keys to use.
    pub issuer: IssuerId,
    /// That issuer's key generation when the job was made.
    pub generation: u64,
    /// The algorithm (each candidate key is bound to it).
    pub alg: Algorithm,
    /// Positions of the candidate keys ([`KeyStore::key`]); valid if any one verifies.
    pub candidates: Vec<usize>,
    /// The signed bytes.
    pub signing_input: String,
    /// The signature (for ECDSA, `r || s` as in JWS, which is also WebCrypto's format).
    pub signature: Vec<u8>,
    pending: Pending,
}

/// Request-derived parts of a forward, computed before the token is checked.
#[derive(Debug, Clone)]
struct ForwardBase {
    /// The resource's list ([`Resource`]'s `strip_headers`), shared.
    remove_headers: Arc<[String]>,
    new_path: Option<String>,
    cors: Vec<(&'static str, String)>,
    /// Scopes the MCP rules add for this request's messages (beyond `required_scopes`).
    rule_scopes: Vec<String>,
    /// Ask the upstream for an uncompressed answer: it may be a list the gateway filters
    /// ([`crate::lists`] reads the answer's JSON and does not decompress).
    identity_encoding: bool,
    /// The body's list requests, whose answers are filtered for the verified identity.
    lists: Option<crate::lists::ListRequests>,
}

/// The gateway: a validated config and the decision logic. Immutable; share it freely.
#[derive(Debug, Clone)]
pub struct Gateway {
    config: Config,
}

const ENDPOINT_PREFLIGHT_HEADERS: &str =
    "authorization, content-type, accept, last-event-id, mcp-protocol-version, mcp-session-id, mcp-method, mcp-name";
const EXPOSE_HEADERS: &str = "www-authenticate, mcp-session-id";

impl Gateway {
    /// Wraps a validated config.
    pub fn new(config: Config) -> Self {
        Gateway { config }
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A token cache sized as configured.
    pub fn new_cache(&self) -> TokenCache {
        TokenCache::new(self.config.token_cache_max_entries)
    }

    /// A token cache sized as configured, hashing with a secret key from the host's
    /// randomness (see [`TokenCache::with_hash_key`]).
    pub fn new_keyed_cache(&self, key: (u64, u64)) -> TokenCache {
        TokenCache::with_hash_key(self.config.token_cache_max_entries, key)
    }

    fn host_ok(res: &Resource, authority: &str) -> bool {
        match &res.hosts {
            None => true,
            Some(hosts) => hosts.iter().any(|h| h.eq_ignore_ascii_case(authority)),
        }
    }

    /// The resource protecting `path` on `authority`: the longest matching path prefix,
    /// matched on whole segments (`/mcp` covers `/mcp`, `/mcp/x`, not `/mcpx`).
    fn route(&self, authority: &str, path: &str) -> Option<(usize, &Resource)> {
        self.config
            .resources
            .iter()
            .enumerate()
            .filter(|(_, r)| Self::host_ok(r, authority))
            .filter(|(_, r)| {
                let p = r.route_prefix.as_str();
                p.is_empty()
                    || path == p
                    || path
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|(_, r)| r.route_prefix.len())
    }

    /// The resource (index and config) protecting `req`'s path on its authority.
    pub(crate) fn route_of(&self, req: &Request<'_>) -> Option<(usize, &Resource)> {
        self.route(req.authority, req.path_only())
    }

    /// How many body bytes the host must buffer before [`Gateway::decide`], or `None` when
    /// the decision does not depend on the body. A host that cannot buffer that much passes
    /// [`crate::Body::TooLarge`] (413); one that asked and did not read it gets a 400.
    pub fn body_limit(&self, req: &Request<'_>) -> Option<usize> {
        if req.method != "POST" {
            return None;
        }
        let path = req.path_only();
        if metadata::lookup(&self.config.resources, path, |r| {
            Self::host_ok(r, req.authority)
        })
        .is_some()
        {
            return None;
        }
        let (_, res) = self.route(req.authority, path)?;
        res.mcp.as_ref().map(|m| m.max_body_bytes)
    }

    /// Decides a request on its headers, for hosts that see the headers before the body
    /// (Envoy): either the verdict, or "read the body, up to `limit` bytes, then
    /// [`Gateway::decide`] with it". The verdict comes at once whenever the body cannot change
    /// it (metadata, no or malformed credentials, a refused `Origin`), and a declared
    /// `Content-Length` over the limit is answered 413 without waiting for the bytes.
    /// `end_of_stream`: the request has no body (decided as an empty one).
    pub fn decide_headers(
        &self,
        req: &Request<'_>,
        end_of_stream: bool,
        now: u64,
        keys: &KeyStore,
        cache: &mut TokenCache,
    ) -> HeadersVerdict {
        let Some(limit) = self.body_limit(req) else {
            return HeadersVerdict::Decided(self.decide(req, now, keys, cache));
        };
        let mut r = *req;
        if end_of_stream {
            r.body = Body::Bytes(&[]);
            return HeadersVerdict::Decided(self.decide(&r, now, keys, cache));
        }
        let declared_too_large = req
            .single_header("content-length")
            .ok()
            .flatten()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit));
        r.body = if declared_too_large {
            Body::TooLarge
        } else {
            Body::NotRead
        };
        // With the body unread, the pipeline stops with `BadBody` exactly when it got as far
        // as the body; any other answer was settled by what comes before it.
        match self.decide(&r, now, keys, cache) {
            Verdict::Respond(resp) if resp.reason != Reason::BadBody => {
                HeadersVerdict::Decided(Verdict::Respond(resp))
            }
            _ => HeadersVerdict::ReadBody { limit },
        }
    }

    /// The scopes the MCP rules require for this request, or the refusal of its body.
    fn rule_scopes(&self, res: &Resource, req: &Request<'_>) -> Result<Vec<String>, Response> {
        let Some(m) = &res.mcp else {
            return Ok(Vec::new());
        };
        if req.method != "POST" {
            return Ok(Vec::new());
        }
        let body = match req.body {
            Body::Bytes(b) if b.len() <= m.max_body_bytes => b,
            Body::Bytes(_) | Body::TooLarge => return Err(challenge::body_too_large()),
            Body::NotRead => return Err(challenge::bad_body("The request body could not be read")),
        };
        let messages = mcp::parse_body(body).map_err(|e| challenge::bad_body(e.description()))?;
        mcp::check_headers(&messages, req)
            .map_err(|e| challenge::header_mismatch(mcp::first_id(&messages), e.message()))?;
        Ok(mcp::needed_scopes(&m.rules, &messages))
    }

    /// Decides what to do with a request at time `now` (seconds since the Unix epoch).
    pub fn decide(
        &self,
        req: &Request<'_>,
        now: u64,
        keys: &KeyStore,
        cache: &mut TokenCache,
    ) -> Verdict {
        self.decide_with(req, now, keys, cache, true, &mut NoTrace)
    }

    /// Decides a request on everything but its body's MCP rules: the token, the base scopes,
    /// the header changes of a forward. For hosts that must let the headers go before the body
    /// is in (the proxy-wasm filter without Envoy's `allow_on_headers_stop_iteration`): a
    /// forward here is followed by [`Gateway::check_body`] once the body is complete, and
    /// the host holds the body until then.
    pub fn decide_deferring_body(
        &self,
        req: &Request<'_>,
        now: u64,
        keys: &KeyStore,
        cache: &mut TokenCache,
    ) -> Verdict {
        self.decide_with(req, now, keys, cache, false, &mut NoTrace)
    }

    /// The MCP rules of a request already forwarded by [`Gateway::decide_deferring_body`],
    /// now that its body is in (`req.body`): `None` to let the body go, or the refusal (400,
    /// 403 naming every scope needed, 413).
    pub fn check_body(&self, req: &Request<'_>, identity: &Identity) -> Option<Response> {
        let (_, res) = self.route_of(req)?;
        let cors = match req.single_header("origin") {
            Ok(Some(origin)) => allowed_origin(res, origin).map(|o| {
                vec![
                    ("access-control-allow-origin", o.to_string()),
                    ("vary", "Origin".to_string()),
                    ("access-control-expose-headers", EXPOSE_HEADERS.to_string()),
                ]
            }),
            _ => None,
        }
        .unwrap_or_default();
        let refusal = match self.rule_scopes(res, req) {
            Err(r) => r,
            Ok(rule_scopes) => missing_scopes(res, identity, &rule_scopes)
                .map(|needed| challenge::insufficient_scope(res, &needed))?,
        };
        let mut r = refusal;
        r.headers.extend(cors);
        Some(r)
    }

    /// The decision of `req` as [`Gateway::decide`] takes it (`req.body` set when the
    /// resource has MCP rules), with every check it made, for `mcp-edge-auth explain`. Uses a
    /// fresh token cache, so the token is checked in full.
    pub fn explain(&self, req: &Request<'_>, now: u64, keys: &KeyStore) -> (Verdict, Vec<Step>) {
        let mut steps = Vec::new();
        let mut cache = self.new_cache();
        let verdict = self.decide_with(req, now, keys, &mut cache, true, &mut steps);
        (verdict, steps)
    }

    fn decide_with(
        &self,
        req: &Request<'_>,
        now: u64,
        keys: &KeyStore,
        cache: &mut TokenCache,
        body_rules: bool,
        trace: &mut impl Trace,
    ) -> Verdict {
        let path = req.path_only();
        if let Some(res) = metadata::lookup(&self.config.resources, path, |r| {
            Self::host_ok(r, req.authority)
        }) {
            return Verdict::Respond(metadata::serve(res, req.method));
        }
        let Some((ri, res)) = self.route(req.authority, path) else {
            trace.step(Check::Resource, false, || {
                alloc::format!("no resource covers {}{path}", req.authority)
            });
            return match self.config.unmatched {
                Unmatched::Allow => Verdict::Forward(Forward {
                    remove_headers: Arc::from([]),
                    add_headers: Arc::from([]),
                    new_path: None,
                    response_headers: Vec::new(),
                    identity: None,
                    reason: Reason::Unprotected,
                    cache_hit: false,
                    lists: None,
                }),
                Unmatched::Deny => Verdict::Respond(challenge::unmatched()),
            };
        };

        trace.step(Check::Resource, true, || res.resource.clone());
        let cors = match req.single_header("origin") {
            Err(_) => {
                return Verdict::Respond(challenge::invalid_request(
                    res,
                    "Only one Origin header is allowed",
                ))
            }
            Ok(None) => Vec::new(),
            Ok(Some(origin)) => match allowed_origin(res, origin) {
                Some(o) => vec![
                    ("access-control-allow-origin", o.to_string()),
                    ("vary", "Origin".to_string()),
                    ("access-control-expose-headers", EXPOSE_HEADERS.to_string()),
                ],
                None => return Verdict::Respond(challenge::forbidden_origin()),
            },
        };

        if req.method == "OPTIONS"
            && !cors.is_empty()
            && req
                .header_values("access-control-request-method")
                .next()
                .is_some()
        {
            let mut headers = cors;
            headers.push((
                "access-control-allow-methods",
                "GET, POST, DELETE, OPTIONS".to_string(),
            ));
            headers.push((
                "access-control-allow-headers",
                ENDPOINT_PREFLIGHT_HEADERS.to_string(),
            ));
            headers.push(("access-control-max-age", res.preflight_max_age.to_string()));
            return Verdict::Respond(Response {
                status: 204,
                headers,
                body: String::new(),
                reason: Reason::Preflight,
            });
        }

        let with_cors = |mut r: Response, cors: &[(&'static str, String)]| {
            r.headers.extend(cors.iter().cloned());
            Verdict::Respond(r)
        };

        let token = match bearer::credentials(req) {
            Bearer::None => {
                trace.step(Check::Credentials, false, || {
                    "no Authorization: Bearer header (the challenge starts discovery)".into()
                });
                return with_cors(challenge::no_credentials(res), &cors);
            }
            Bearer::Malformed(d) => {
                trace.step(Check::Credentials, false, || d.into());
                return with_cors(challenge::invalid_request(res, d), &cors);
            }
            Bearer::Token(t) => t,
        };
        // The cache first: a token found there passed every check below when it was cached
        // (`token68` included, which reads every byte), under this same config.
        let hash = cache.hash(token);
        let (hit, stale) = match cache.get(&hash, token, ri, now) {
            None => (None, false),
            Some(hit) => match hit.generation {
                Some(g) if g != keys.generation(hit.issuer) || !keys.usable(hit.issuer, now) => {
                    (None, true)
                }
                _ => (
                    Some((hit.identity.clone(), hit.claim_headers.clone())),
                    false,
                ),
            },
        };
        if stale {
            // Its issuer's keys changed since: checked again below.
            cache.remove(&hash);
        }
        if hit.is_none() && !bearer::is_token68(token) {
            let d = "The bearer credentials are malformed";
            trace.step(Check::Credentials, false, || d.into());
            return with_cors(challenge::invalid_request(res, d), &cors);
        }
        trace.step(Check::Credentials, true, || {
            alloc::format!("a bearer token of {} bytes", token.len())
        });
        if token.len() > self.config.max_token_bytes {
            trace.step(Check::Format, false, || {
                alloc::format!(
                    "longer than max_token_bytes ({})",
                    self.config.max_token_bytes
                )
            });
            return with_cors(
                challenge::invalid_token(res, "The access token is too large", Reason::Invalid),
                &cors,
            );
        }

        let rule_scopes = if body_rules {
            match self.rule_scopes(res, req) {
                Ok(s) => s,
                Err(r) => {
                    trace.step(Check::Body, false, || {
                        alloc::format!("the MCP rules refused the body ({}): {}", r.status, r.body)
                    });
                    return with_cors(r, &cors);
                }
            }
        } else {
            Vec::new()
        };
        let lists = if body_rules {
            crate::lists::ListRequests::of(res, ri, req)
        } else {
            None
        };
        // With the body known: when it has a list request. Unknown (checked after the
        // headers went on): for every POST to a resource that filters lists.
        let identity_encoding = if body_rules {
            lists.is_some()
        } else {
            req.method == "POST" && res.mcp.as_ref().is_some_and(|m| m.filter_lists)
        };
        let base = ForwardBase {
            remove_headers: if identity_encoding {
                Arc::clone(&res.strip_headers_encoding)
            } else {
                Arc::clone(&res.strip_headers)
            },
            new_path: bearer::strip_query_token(req.path),
            cors,
            rule_scopes,
            identity_encoding,
            lists,
        };

        if let Some((identity, headers)) = hit {
            let subject = Subject {
                resource: ri,
                token,
            };
            return self
                .finish(res, subject, identity, headers, base, true)
                .into();
        }

        if !token.contains('.') {
            if let Some((issuer, intro)) = res.issuers.iter().find_map(|id| {
                let i = self.config.issuer(*id)?;
                Some((*id, i.introspection.as_ref()?))
            }) {
                return Verdict::Introspect(IntrospectionJob {
                    issuer,
                    cluster: intro.cluster.clone(),
                    uri: intro.uri.clone(),
                    authority: intro.authority.clone(),
                    path: intro.path.clone(),
                    timeout_ms: intro.timeout_ms,
                    headers: vec![
                        (
                            "content-type",
                            "application/x-www-form-urlencoded".to_string(),
                        ),
                        ("accept", "application/json".to_string()),
                        ("authorization", intro.authorization.clone()),
                    ],
                    body: alloc::format!(
                        "token={}&token_type_hint=access_token",
                        crate::form::encode(token)
                    ),
                    pending: Pending {
                        resource: ri,
                        hash,
                        token: token.into(),
                        identity: Identity::default(),
                        claim_headers: Vec::new(),
                        expires_at: 0,
                        base,
                    },
                });
            }
        }
        match self.check_token(res, ri, token, hash, now, keys, base, trace) {
            Ok(Checked::Verified(p)) => {
                if trace.enabled() {
                    let missing = missing_scopes(res, &p.identity, &p.base.rule_scopes);
                    trace.step(Check::Scopes, missing.is_none(), || {
                        self.scope_detail(res, req, &p.identity, missing.as_deref())
                    });
                }
                self.accept(p, None, now, keys, cache).into()
            }
            Ok(Checked::Other(v)) => v,
            Err((r, cors)) => with_cors(r, &cors),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_token(
        &self,
        res: &Resource,
        ri: usize,
        token: &str,
        hash: TokenHash,
        now: u64,
        keys: &KeyStore,
        base: ForwardBase,
        trace: &mut impl Trace,
    ) -> Result<Checked, Refusal> {
        let invalid = |d: &'static str, reason: Reason, base: &ForwardBase| {
            (challenge::invalid_token(res, d, reason), base.cors.clone())
        };
        let jws = match jws::parse(token) {
            Ok(j) => j,
            Err(e) => {
                trace.step(Check::Format, false, || e.description().into());
                return Err(invalid(e.description(), Reason::Invalid, &base));
            }
        };
        trace.step(Check::Format, true, || {
            alloc::format!(
                "JWS header: alg {}, kid {}, typ {}; claims {}",
                jws.alg.name(),
                shown(jws.kid.as_deref()),
                shown(jws.typ.as_deref()),
                explain_claims(&jws.claims.0)
            )
        });
        let trusted = || {
            res.issuers
                .iter()
                .filter_map(|id| self.config.issuer(*id).map(|i| i.issuer.as_str()))
                .collect::<Vec<_>>()
        };
        let iss = match jws.claims.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            _ => {
                trace.step(Check::Issuer, false, || {
                    alloc::format!("no iss claim; trusted: {:?}", trusted())
                });
                return Err(invalid(
                    ClaimError::MissingIssuer.description(),
                    Reason::Invalid,
                    &base,
                ));
            }
        };
        let Some((issuer_id, issuer)) = res
            .issuers
            .iter()
            .filter_map(|id| self.config.issuer(*id).map(|i| (*id, i)))
            .find(|(_, i)| i.issuer == iss)
        else {
            trace.step(Check::Issuer, false, || {
                alloc::format!(
                    "iss {iss:?} is not one of this resource's issuers {:?} (compared exactly)",
                    trusted()
                )
            });
            return Err(invalid(
                "The access token issuer is not trusted",
                Reason::Invalid,
                &base,
            ));
        };
        trace.step(Check::Issuer, true, || alloc::format!("{iss:?}"));
        let allowed = issuer.algorithms.contains(jws.alg);
        trace.step(Check::Algorithm, allowed, || {
            let names: Vec<&str> = issuer.algorithms.iter().map(|a| a.name()).collect();
            alloc::format!("alg {}; the issuer allows {names:?}", jws.alg.name())
        });
        if !allowed {
            return Err(invalid(
                "The access token signature algorithm is not allowed",
                Reason::Invalid,
                &base,
            ));
        }
        let typ = claims::check_typ(jws.typ.as_deref(), issuer.typ);
        trace.step(Check::Typ, typ.is_ok(), || {
            let why = typ.err().map_or("", ClaimError::description);
            alloc::format!(
                "typ {}; policy {:?}. {why}",
                shown(jws.typ.as_deref()),
                issuer.typ
            )
            .trim_end_matches([' ', '.'])
            .into()
        });
        typ.map_err(|e| invalid(e.description(), Reason::Invalid, &base))?;
        let c = &jws.claims;
        let exp = claims::check_time(
            c.get("exp"),
            c.get("nbf"),
            c.get("iat"),
            now,
            issuer.clock_skew,
        );
        trace.step(Check::Lifetime, exp.is_ok(), || {
            let why = exp.err().map_or("", ClaimError::description);
            alloc::format!(
                "now {now}; exp {}, nbf {}, iat {}; clock skew {} s. {why}",
                relative(c.get("exp"), now),
                relative(c.get("nbf"), now),
                relative(c.get("iat"), now),
                issuer.clock_skew
            )
            .trim_end_matches([' ', '.'])
            .into()
        });
        let exp = exp.map_err(|e| {
            let reason = match e {
                ClaimError::Expired | ClaimError::NotYetValid => Reason::Expired,
                _ => Reason::Invalid,
            };
            invalid(e.description(), reason, &base)
        })?;
        let aud = audience::check(c.get("aud"), &res.audiences, res.fold_origin_slash);
        trace.step(Check::Audience, aud == Audience::Accepted, || {
            explain_audience(c.get("aud"), &res.audiences, res.fold_origin_slash)
        });
        match aud {
            Audience::Accepted => {}
            Audience::NotForUs | Audience::Malformed => {
                return Err(invalid(
                    "The access token was not issued for this resource",
                    Reason::Audience,
                    &base,
                ))
            }
        }
        let scopes = claims::scopes(c.get("scope"), c.get("scp"));
        if let Err(e) = &scopes {
            trace.step(Check::ScopeClaim, false, || e.description().into());
        }
        let scopes = scopes.map_err(|e| invalid(e.description(), Reason::Invalid, &base))?;

        let remote = matches!(issuer.source, crate::config::KeySource::Remote(_));
        let stored = match keys.state(issuer_id, now) {
            KeyState::Usable(k) => k,
            KeyState::Missing if remote => {
                trace.step(Check::Keys, false, || {
                    "the issuer's JWKS is not loaded (the gateway fetches it; until it \
                     arrives: 503 with Retry-After)"
                        .into()
                });
                return Ok(Checked::Other(Verdict::AwaitKeys(KeyWait {
                    issuer: issuer_id,
                    unknown_kid: false,
                    generation: keys.generation(issuer_id),
                    refusal: KeyRefusal::Unavailable(base.cors),
                })));
            }
            KeyState::Missing => {
                // Inline keys are installed at load; never reached for a valid config.
                return Err((challenge::unavailable(1), base.cors));
            }
        };
        let candidates: Vec<usize> = stored
            .iter()
            .enumerate()
            .filter(|(_, k)| k.jwk.alg == jws.alg && (jws.kid.is_none() || k.jwk.kid == jws.kid))
            .map(|(i, _)| i)
            .take(MAX_CANDIDATES)
            .collect();
        trace.step(Check::Key, !candidates.is_empty(), || {
            let known: Vec<String> = stored
                .iter()
                .map(|k| alloc::format!("{} {}", k.jwk.alg.name(), shown(k.jwk.kid.as_deref())))
                .collect();
            alloc::format!(
                "kid {}, alg {}; the issuer's keys: {known:?}{}",
                shown(jws.kid.as_deref()),
                jws.alg.name(),
                if candidates.is_empty() && remote {
                    " (an unknown kid makes the gateway refetch the JWKS once per cooldown)"
                } else {
                    ""
                }
            )
        });
        if candidates.is_empty() {
            if remote && jws.kid.as_deref().is_some_and(plausible_kid) {
                let (r, cors) = invalid(
                    "The access token was signed with an unknown key",
                    Reason::Invalid,
                    &base,
                );
                let mut refusal = r;
                refusal.headers.extend(cors);
                return Ok(Checked::Other(Verdict::AwaitKeys(KeyWait {
                    issuer: issuer_id,
                    unknown_kid: true,
                    generation: keys.generation(issuer_id),
                    refusal: KeyRefusal::UnknownKey(refusal),
                })));
            }
            return Err(invalid(
                "The access token was signed with an unknown key",
                Reason::Invalid,
                &base,
            ));
        }

        let (identity, claim_headers) = verified(res, &issuer.issuer, &c.0, scopes, exp);
        let pending = Pending {
            resource: ri,
            hash,
            token: token.into(),
            identity,
            claim_headers,
            expires_at: exp.saturating_add(issuer.clock_skew),
            base,
        };

        let input = VerifyInput {
            token,
            signing_input: jws.signing_input.as_bytes(),
            signature: &jws.signature,
            now,
            clock_skew: issuer.clock_skew,
        };
        let mut deferred = false;
        for &i in &candidates {
            let Some(k) = stored.get(i) else { continue };
            match k.verifier.verify(&input) {
                Verification::Valid => {
                    trace.step(Check::Signature, true, || {
                        alloc::format!(
                            "verified with {} key {}",
                            k.jwk.alg.name(),
                            shown(k.jwk.kid.as_deref())
                        )
                    });
                    return Ok(Checked::Verified(pending));
                }
                Verification::Invalid => {}
                Verification::Deferred => deferred = true,
            }
        }
        if deferred {
            trace.step(Check::Signature, true, || {
                "left to the host's crypto (deferred provider)".into()
            });
            return Ok(Checked::Other(Verdict::VerifySignature(SignatureJob {
                issuer: issuer_id,
                generation: keys.generation(issuer_id),
                alg: jws.alg,
                candidates,
                signing_input: jws.signing_input.to_string(),
                signature: jws.signature,
                pending,
            })));
        }
        trace.step(Check::Signature, false, || {
            alloc::format!("no candidate key verifies it ({} tried)", candidates.len())
        });
        Err((
            challenge::invalid_token(
                res,
                "The access token signature is invalid",
                Reason::Invalid,
            ),
            pending.base.cors,
        ))
    }

    /// Completes a [`Verdict::VerifySignature`] with the host's answer.
    pub fn resume(
        &self,
        job: SignatureJob,
        valid: bool,
        now: u64,
        keys: &KeyStore,
        cache: &mut TokenCache,
    ) -> Decision {
        if !valid {
            return Decision::Respond(self.reject(job));
        }
        // Keys that changed while the host verified: the answer still holds for the key it
        // used, but is not cached under the new generation.
        let generation = (keys.generation(job.issuer) == job.generation).then_some(job.generation);
        self.accept(
            job.pending,
            generation.map(|g| (job.issuer, g)),
            now,
            keys,
            cache,
        )
    }

    /// The refusal of a [`SignatureJob`] a host cannot verify (a host whose provider is
    /// synchronous never gets one; if it does, it fails closed with this 401).
    pub fn reject(&self, job: SignatureJob) -> Response {
        let Some(res) = self.config.resources.get(job.pending.resource) else {
            return challenge::unmatched();
        };
        let mut r = challenge::invalid_token(
            res,
            "The access token signature is invalid",
            Reason::Invalid,
        );
        r.headers.extend(job.pending.base.cors);
        r
    }

    /// Completes a [`Verdict::Introspect`] with the endpoint's answer: `Some((status,
    /// body))`, or `None` when the call failed (timeout, connection refused). Anything but a
    /// 200 with a JSON object is a 503: an introspection outage never lets a token through.
    pub fn resume_introspection(
        &self,
        job: IntrospectionJob,
        answer: Option<(u16, &[u8])>,
        now: u64,
        cache: &mut TokenCache,
    ) -> Decision {
        let p = job.pending;
        let (Some(res), Some(issuer)) = (
            self.config.resources.get(p.resource),
            self.config.issuer(job.issuer),
        ) else {
            return Decision::Respond(challenge::unmatched());
        };
        let retry_after = issuer
            .introspection
            .as_ref()
            .map_or(10, |i| u64::from(i.retry_after));
        let refuse = |r: Response, cors: Vec<(&'static str, String)>| {
            let mut r = r;
            r.headers.extend(cors);
            Decision::Respond(r)
        };
        let doc = match answer {
            Some((200, body)) => match crate::json::StrictObject::from_slice(body) {
                Some(d) => d,
                None => return refuse(challenge::unavailable(retry_after), p.base.cors),
            },
            _ => return refuse(challenge::unavailable(retry_after), p.base.cors),
        };
        let invalid = |d: &'static str, reason: Reason| challenge::invalid_token(res, d, reason);
        if doc.get("active") != Some(&Value::Bool(true)) {
            return refuse(
                invalid("The access token is not active", Reason::Invalid),
                p.base.cors,
            );
        }
        match doc.get("iss") {
            None => {}
            Some(Value::String(s)) if *s == issuer.issuer => {}
            Some(_) => {
                return refuse(
                    invalid("The access token issuer is not trusted", Reason::Invalid),
                    p.base.cors,
                )
            }
        }
        let exp = match claims::check_time(
            doc.get("exp"),
            doc.get("nbf"),
            doc.get("iat"),
            now,
            issuer.clock_skew,
        ) {
            Ok(exp) => exp,
            Err(e) => {
                let reason = if matches!(e, ClaimError::Expired | ClaimError::NotYetValid) {
                    Reason::Expired
                } else {
                    Reason::Invalid
                };
                return refuse(invalid(e.description(), reason), p.base.cors);
            }
        };
        if audience::check(doc.get("aud"), &res.audiences, res.fold_origin_slash)
            != Audience::Accepted
        {
            return refuse(
                invalid(
                    "The access token was not issued for this resource",
                    Reason::Audience,
                ),
                p.base.cors,
            );
        }
        let scopes = match claims::scopes(doc.get("scope"), doc.get("scp")) {
            Ok(s) => s,
            Err(e) => return refuse(invalid(e.description(), Reason::Invalid), p.base.cors),
        };
        let (identity, claim_headers) = verified(res, &issuer.issuer, &doc.0, scopes, exp);
        let max = issuer
            .introspection
            .as_ref()
            .map_or(0, |i| u64::from(i.cache_max_seconds));
        let subject = Subject {
            resource: p.resource,
            token: &p.token,
        };
        let (identity, claim_headers) = (Arc::new(identity), Arc::from(claim_headers));
        let decision = self.finish(
            res,
            subject,
            Arc::clone(&identity),
            Arc::clone(&claim_headers),
            p.base,
            false,
        );
        cache.insert(
            p.hash,
            VerifiedToken {
                resource: p.resource,
                issuer: job.issuer,
                generation: None,
                expires_at: exp.min(now.saturating_add(max)),
                identity,
                claim_headers,
                token: p.token,
            },
            now,
        );
        decision
    }

    fn accept(
        &self,
        p: Pending,
        deferred: Option<(IssuerId, u64)>,
        now: u64,
        keys: &KeyStore,
        cache: &mut TokenCache,
    ) -> Decision {
        let Some(res) = self.config.resources.get(p.resource) else {
            return Decision::Respond(challenge::unmatched());
        };
        let issuer = res.issuers.iter().copied().find(|id| {
            self.config
                .issuer(*id)
                .is_some_and(|i| i.issuer == p.identity.issuer)
        });
        let cacheable = match (deferred, issuer) {
            (Some((id, g)), _) => Some((id, g)),
            (None, Some(id)) => Some((id, keys.generation(id))),
            (None, None) => None,
        };
        let subject = Subject {
            resource: p.resource,
            token: &p.token,
        };
        let identity = Arc::new(p.identity);
        let claim_headers: Arc<[(String, String)]> = Arc::from(p.claim_headers);
        let decision = self.finish(
            res,
            subject,
            Arc::clone(&identity),
            Arc::clone(&claim_headers),
            p.base,
            false,
        );
        if let Some((issuer, generation)) = cacheable {
            cache.insert(
                p.hash,
                VerifiedToken {
                    resource: p.resource,
                    issuer,
                    generation: Some(generation),
                    expires_at: p.expires_at,
                    identity,
                    claim_headers,
                    token: p.token,
                },
                now,
            );
        }
        decision
    }

    fn finish(
        &self,
        res: &Resource,
        subject: Subject<'_>,
        identity: Arc<Identity>,
        claim_headers: Arc<[(String, String)]>,
        base: ForwardBase,
        cache_hit: bool,
    ) -> Decision {
        if let Some(needed) = missing_scopes(res, &identity, &base.rule_scopes) {
            let mut r = challenge::insufficient_scope(res, &needed);
            r.headers.extend(base.cors);
            return Decision::Respond(r);
        }
        let subject_exp = identity.expires_at;
        let add_headers = if base.identity_encoding {
            let encoding = ("accept-encoding".to_string(), "identity".to_string());
            crate::http::appended(&claim_headers, encoding)
        } else {
            claim_headers
        };
        let lists = base
            .lists
            .map(|l| alloc::boxed::Box::new(l.filter_for(&identity)));
        let forward = Forward {
            remove_headers: base.remove_headers,
            add_headers,
            new_path: base.new_path,
            response_headers: base.cors,
            identity: Some(identity),
            reason: Reason::Allowed,
            cache_hit,
            lists,
        };
        if res.upstream_token.is_some() {
            return Decision::Exchange(ExchangeNeed {
                resource: subject.resource,
                subject: subject.token.into(),
                subject_exp,
                forward,
            });
        }
        Decision::Forward(forward)
    }
}

impl Gateway {
    /// What the scope check compared: the token's scopes, the resource's, and each MCP
    /// rule that matched a message of the body.
    fn scope_detail(
        &self,
        res: &Resource,
        req: &Request<'_>,
        identity: &Identity,
        missing: Option<&[String]>,
    ) -> String {
        let mut out = alloc::format!(
            "the token grants {:?}; the resource requires {:?}",
            identity.scopes,
            res.required_scopes
        );
        if let (Some(m), Body::Bytes(b)) = (&res.mcp, req.body) {
            if let Ok(messages) = mcp::parse_body(b) {
                for msg in &messages {
                    if let Some(rule) = mcp::matching_rule(&m.rules, msg) {
                        out.push_str(&alloc::format!(
                            "; rule {{method {:?}, name {:?}}} matched {} {:?} and requires {:?}",
                            rule.method,
                            rule.name,
                            msg.method.as_deref().unwrap_or(""),
                            msg.name.as_deref().unwrap_or(""),
                            rule.scopes
                        ));
                    }
                }
            }
        }
        if !res.implied_scopes.is_empty() {
            out.push_str(&alloc::format!(
                "; scope_hierarchy {:?}",
                res.implied_scopes
            ));
        }
        if let Some(needed) = missing {
            out.push_str(&alloc::format!("; a 403 names {needed:?}"));
        }
        out
    }
}

/// An optional header field for `explain`: its value quoted, or `none`.
fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "none".into(), |s| alloc::format!("{s:?}"))
}

/// The registered claims of a token for `explain` (never the signature or the token).
fn explain_claims(claims: &alloc::collections::BTreeMap<String, Value>) -> String {
    let mut out = String::new();
    for name in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "scope",
        "scp",
        "exp",
        "nbf",
        "iat",
    ] {
        if let Some(v) = claims.get(name) {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(&alloc::format!("{name}={v}"));
        }
    }
    out
}

/// A time claim and how far it is from `now`.
fn relative(v: Option<&Value>, now: u64) -> String {
    match v.and_then(Value::as_u64) {
        None => "absent".into(),
        Some(t) if t >= now => alloc::format!("{t} (in {} s)", t - now),
        Some(t) => alloc::format!("{t} ({} s ago)", now - t),
    }
}

/// The token's audiences and this resource's, each in the normalised form compared.
fn explain_audience(aud: Option<&Value>, accepted: &[String], fold: bool) -> String {
    let values: Vec<&str> = match aud {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let forms: Vec<String> = values
        .iter()
        .map(|v| alloc::format!("{v} → {}", uri::audience_form(v, fold)))
        .collect();
    alloc::format!(
        "aud {forms:?}; the resource accepts {accepted:?} (scheme and host lowercased, \
         default port dropped{})",
        if fold {
            ", an origin-only value's trailing / ignored"
        } else {
            ""
        }
    )
}

/// Every scope a 403 must name when `identity` lacks one of the resource's base scopes or of
/// `rule_scopes` (granted directly or implied by the scope hierarchy); `None` when all are
/// granted.
pub(crate) fn missing_scopes(
    res: &Resource,
    identity: &Identity,
    rule_scopes: &[String],
) -> Option<Vec<String>> {
    let granted = |s: &String| {
        identity.scopes.contains(s)
            || res
                .implied_scopes
                .iter()
                .any(|(g, implied)| implied.contains(s) && identity.scopes.contains(g))
    };
    if res.required_scopes.iter().all(granted) && rule_scopes.iter().all(granted) {
        return None;
    }
    let mut needed = res.required_scopes.clone();
    needed.extend(
        rule_scopes
            .iter()
            .filter(|s| !res.required_scopes.contains(s))
            .cloned(),
    );
    Some(needed)
}

/// The client's token a forward was decided for (what an upstream token is exchanged for).
struct Subject<'t> {
    resource: usize,
    token: &'t str,
}

/// A refusal and the CORS headers it must carry.
type Refusal = (Response, Vec<(&'static str, String)>);

enum Checked {
    Verified(Pending),
    Other(Verdict),
}

/// The configured form of `origin` when this resource allows it: its own origin, or one of
/// `allowed_origins`. The returned string comes from config, never from the request.
fn allowed_origin<'r>(res: &'r Resource, origin: &str) -> Option<&'r str> {
    let form = uri::audience_form(origin.trim(), true);
    res.allowed_origins
        .iter()
        .find(|o| **o == form)
        .map(String::as_str)
}

/// Whether a `kid` we do not have is worth a refetch: short and made of the characters key
/// ids use. Anything else (path tricks, quotes, kilobytes) is refused without a lookup.
fn plausible_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 128
        && !kid.contains("..")
        && kid.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=' | b':' | b'@'
                )
        })
}

/// The identity and the claim headers a verified claims set (JWT payload or introspection
/// answer) yields, built the same way whatever verified it.
fn verified(
    res: &Resource,
    issuer: &str,
    claims: &alloc::collections::BTreeMap<String, Value>,
    scopes: Vec<String>,
    exp: u64,
) -> (Identity, Vec<(String, String)>) {
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .map(ToString::to_string)
    };
    let identity = Identity {
        issuer: issuer.to_string(),
        subject: text("sub"),
        client_id: text("client_id"),
        scopes,
        expires_at: exp,
    };
    let headers = res
        .claim_to_headers
        .iter()
        .filter_map(|(h, claim)| header_value(claims.get(claim)?).map(|v| (h.clone(), v)))
        .collect();
    (identity, headers)
}

/// Renders a claim for a request header (strings, numbers, booleans, arrays of strings joined
/// with `,`), or `None` when it cannot be carried safely.
fn header_value(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => {
            let parts: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
            parts?.join(",")
        }
        _ => return None,
    };
    let safe = !s.is_empty()
        && s.len() <= 4096
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && s.trim() == s;
    safe.then_some(s)
}

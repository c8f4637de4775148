//! `mcp-edge-auth explain`: the gateway's decision for one token, check by check.
//!
//! The CLI acts as one more host of the core: it builds the request a client would send,
//! asks [`Gateway::explain`] (the same decision the proxies take, recording each check),
//! and carries out what the verdict asks for (keys: from the config, `--jwks`, or an
//! `http://` fetch, through the [`KeySchedule`] every host runs), until the gateway answers.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_edge_auth_core::config::{self, Host};
use mcp_edge_auth_core::crypto::default_provider;
use mcp_edge_auth_core::explain::Step;
use mcp_edge_auth_core::http::OwnedBody;
use mcp_edge_auth_core::keys::schedule::{Failure, FetchOutcome};
use mcp_edge_auth_core::{Gateway, KeySchedule, KeyStore, OwnedRequest, Verdict, Wait};

use crate::args::{read_input, Args};
use crate::{fetch, split_url};

pub const USAGE: &str = "\
usage: mcp-edge-auth explain --config FILE [options] TOKEN|-

Walks the gateway's decision for one bearer token and prints every check (issuer, key,
algorithm, signature, exp/nbf against the clock, typ, audience in the normalised forms
compared, scopes of the resource and of the MCP rule that asked), then the status and the
WWW-Authenticate header the client would get. The token is never printed; pass - to read
it from stdin (and keep it out of your shell history).

  --config FILE      the gateway config (the one JSON format)
  --jwks FILE|URL    the JWKS for remote_jwks issuers: a saved document, or an http:// URL
                     (default: the issuer's remote_jwks uri when it is http://; for https,
                     save it first: curl -so jwks.json <uri>)
  --resource URL     which resource the request goes to (default: the one whose audience
                     the token names, else the first)
  --method METHOD    default POST
  --call TOOL        the body is a JSON-RPC tools/call of TOOL (for per-tool MCP rules)
  --body FILE        the request body (JSON-RPC), instead of --call
  --header 'N: V'    an extra request header (repeatable), e.g. 'Origin: https://app'
  --now SECONDS      the clock, as Unix seconds (default: now)

Exit status: 0 when the gateway would forward the request, 1 when it would refuse it,
2 for a usage error.
";

/// The decision of `req` with every check the gateway made.
fn decide(
    req: &OwnedRequest,
    gateway: &Gateway,
    now: u64,
    keys: &KeyStore,
) -> (Verdict, Vec<Step>) {
    req.with(|r| gateway.explain(r, now, keys))
}

pub fn run(argv: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse(
        argv,
        &[
            "config", "jwks", "resource", "method", "call", "body", "header", "now",
        ],
        &[],
    )?;
    if a.flag("help") {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let file = a
        .get("config")
        .ok_or_else(|| format!("explain needs --config FILE\n\n{USAGE}"))?;
    let token_arg = match a.positionals.as_slice() {
        [t] => t.as_str(),
        [] => return Err(format!("explain needs a TOKEN (or - for stdin)\n\n{USAGE}")),
        _ => return Err("explain takes one TOKEN".into()),
    };
    let token = if token_arg == "-" {
        String::from_utf8(read_input("-")?).map_err(|_| "the token is not UTF-8".to_string())?
    } else {
        token_arg.to_string()
    };
    let token = token
        .trim()
        .trim_start_matches("Bearer ")
        .trim()
        .to_string();
    let now_ms = match a.get("now") {
        Some(n) => n
            .parse::<u64>()
            .map_err(|_| format!("--now {n:?}: expected Unix seconds"))?
            .saturating_mul(1000),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    let now = now_ms / 1000;

    let bytes = read_input(file)?;
    // The Worker's rules: `explain` fetches URIs itself, clusters are not needed.
    let loaded = config::load(&bytes, Host::Worker, Box::new(default_provider()))
        .map_err(|e| format!("{file}: {e}"))?;
    let mut keys = loaded.keys;
    let mut schedule = KeySchedule::new(&loaded.config, now_ms);
    let gateway = Gateway::new(loaded.config);

    let body = match (a.get("call"), a.get("body")) {
        (Some(_), Some(_)) => return Err("give --call or --body, not both".into()),
        (Some(tool), None) => Some(
            serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": { "name": tool, "arguments": {} }
            })
            .to_string()
            .into_bytes(),
        ),
        (None, Some(f)) => Some(read_input(f)?),
        (None, None) => None,
    };
    let mut extra = Vec::new();
    for h in a.all("header") {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected 'Name: value'"))?;
        extra.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let method = a.get("method").unwrap_or("POST").to_ascii_uppercase();
    let build = |url: &str| -> Result<OwnedRequest, String> {
        let (scheme, authority, path) =
            split_url(url).ok_or_else(|| format!("cannot split {url}"))?;
        let mut headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
        if method == "POST" {
            headers.push(("content-type".into(), "application/json".into()));
            headers.push((
                "accept".into(),
                "application/json, text/event-stream".into(),
            ));
        }
        headers.extend(extra.iter().cloned());
        Ok(OwnedRequest {
            method: method.clone(),
            scheme: scheme.into(),
            authority: authority.into(),
            path: path.into(),
            headers,
            // A neutral MCP request (base scopes only) unless --call or --body say otherwise.
            body: body
                .clone()
                .or_else(|| {
                    (method == "POST")
                        .then(|| br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec())
                })
                .map_or(OwnedBody::NotRead, OwnedBody::Bytes),
        })
    };

    let resources: Vec<String> = gateway
        .config()
        .resources()
        .iter()
        .map(|r| r.resource.clone())
        .collect();
    let url = match a.get("resource") {
        Some(r) => {
            if !resources.iter().any(|x| x == r) {
                return Err(format!("--resource {r}: not in the config ({resources:?})"));
            }
            r.to_string()
        }
        // The first resource whose audience check passes (keys are not needed for it).
        None => resources
            .iter()
            .find(|r| {
                build(r).is_ok_and(|b| {
                    let (_, steps) = decide(&b, &gateway, now, &keys);
                    steps.iter().any(|s| {
                        s.check == mcp_edge_auth_core::explain::Check::Audience && s.passed
                    })
                })
            })
            .or(resources.first())
            .cloned()
            .ok_or("the config has no resource")?,
    };
    let req = build(&url)?;
    let what = match (a.get("call"), a.get("body"), req.method.as_str()) {
        (Some(tool), _, _) => format!(" tools/call {tool:?}"),
        (None, Some(f), _) => format!(" body from {f}"),
        (None, None, "POST") => " tools/list".to_string(),
        _ => String::new(),
    };
    println!("request: {} {url}{what} (clock {now})", req.method);

    // Run the decision as a host would, carrying out key fetches, until it answers.
    let mut previous = None;
    for _round in 0..8 {
        let (verdict, steps) = decide(&req, &gateway, now, &keys);
        match verdict {
            Verdict::AwaitKeys(need) => {
                match schedule.wait(need, previous, now_ms, &keys) {
                    Wait::Refused(r) => return Ok(answer(&steps, Answer::Refused(&r))),
                    Wait::Paused(id) => previous = Some(id),
                }
                while let Some(f) = schedule.poll_fetch(now_ms) {
                    let source = a.get("jwks").unwrap_or(&f.uri).to_string();
                    let got = obtain(&source, f.max_body_bytes, f.timeout_ms);
                    let outcome = match &got {
                        Ok(d) if d.body.len() > f.max_body_bytes => FetchOutcome::TooLarge,
                        Ok(d) => FetchOutcome::Response {
                            status: d.status,
                            cache_control: d.cache_control.as_deref(),
                            body: &d.body,
                        },
                        Err((why, _)) => FetchOutcome::Failed(*why),
                    };
                    let name = gateway
                        .config()
                        .issuer(f.issuer)
                        .map_or(String::new(), |i| i.issuer.clone());
                    if let Err((_, e)) = &got {
                        println!("jwks: {source}: {e}");
                    }
                    if let Some(report) = schedule.handle_fetch(f.id, outcome, now_ms, &mut keys) {
                        println!(
                            "jwks: {} ({})",
                            report.log_line(&name).1,
                            trigger_word(f.trigger)
                        );
                    }
                }
                while schedule.poll_wake(now_ms).is_some() {}
            }
            Verdict::Respond(r) => return Ok(answer(&steps, Answer::Refused(&r))),
            Verdict::Forward(f) => return Ok(answer(&steps, Answer::Forwarded(&f))),
            Verdict::Exchange(need) => {
                // Every check passed; the gateway would now exchange the token (RFC 8693)
                // and forward with the upstream's own token. explain makes no exchange.
                if let Some(u) = gateway
                    .config()
                    .resources()
                    .get(need.resource())
                    .and_then(|r| r.upstream_token())
                {
                    println!(
                        "upstream_token: the gateway exchanges the token at {} for {:?} and \
                         forwards with that one in {} (explain makes no exchange)",
                        u.uri, u.target, u.header
                    );
                }
                return Ok(answer(&steps, Answer::Forwarded(need.pending_forward())));
            }
            Verdict::Introspect(job) => {
                print_steps(&steps);
                println!(
                    "verdict: an opaque token: the gateway would introspect it at {} (RFC 7662); \
                     explain checks JWTs only",
                    job.uri
                );
                return Ok(ExitCode::FAILURE);
            }
            Verdict::VerifySignature(_) => {
                print_steps(&steps);
                println!("verdict: the signature is left to the host's crypto");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    println!("verdict: the gateway kept waiting for keys");
    Ok(ExitCode::FAILURE)
}

fn trigger_word(t: mcp_edge_auth_core::keys::schedule::Trigger) -> &'static str {
    t.as_str()
}

/// The document at `source` (a file, or an http:// URL), or why there is none.
fn obtain(source: &str, max: usize, timeout_ms: u32) -> Result<fetch::Fetched, fetch::Failed> {
    if source.contains("://") {
        fetch::get(source, Duration::from_millis(u64::from(timeout_ms)), max)
    } else {
        std::fs::read(source)
            .map(|body| fetch::Fetched {
                status: 200,
                cache_control: None,
                body,
            })
            .map_err(|e| (Failure::NotSent, format!("cannot read: {e}")))
    }
}

enum Answer<'a> {
    Refused(&'a mcp_edge_auth_core::Response),
    Forwarded(&'a mcp_edge_auth_core::Forward),
}

fn print_steps(steps: &[Step]) {
    for s in steps {
        println!(
            "  {:<4} {:<12} {}",
            if s.passed { "ok" } else { "FAIL" },
            s.check.name(),
            s.detail
        );
    }
}

fn answer(steps: &[Step], a: Answer<'_>) -> ExitCode {
    print_steps(steps);
    let failing = steps.iter().find(|s| !s.passed).map(|s| s.check.name());
    match a {
        Answer::Refused(r) => {
            println!("verdict: {} ({})", r.status, r.reason.as_str());
            for (name, value) in &r.headers {
                if matches!(*name, "www-authenticate" | "retry-after") {
                    println!("  {name}: {value}");
                }
            }
            if !r.body.is_empty() {
                println!("  body: {}", r.body);
            }
            if let Some(f) = failing {
                println!("failing check: {f}");
            }
            ExitCode::FAILURE
        }
        Answer::Forwarded(f) => {
            println!("verdict: forwarded to the upstream ({})", f.reason.as_str());
            if !f.remove_headers.is_empty() {
                println!("  removed: {}", f.remove_headers.join(", "));
            }
            for (n, v) in f.add_headers.iter() {
                println!("  added: {n}: {v}");
            }
            if let Some(l) = &f.lists {
                println!(
                    "  lists: the answer to its {} list request(s) keeps only the entries this \
                     token may use (mcp.filter_lists)",
                    l.len()
                );
            }
            ExitCode::SUCCESS
        }
    }
}

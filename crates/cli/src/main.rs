//! `mcp-edge-auth`: the command line of mcp-edge-auth.
//!
//! - `check-config [--host envoy|module|worker] FILE|-…` loads each configuration with the
//!   core's [`config::load`], the function the hosts call at start-up, so it applies exactly
//!   the checks that host applies (Envoy: every remote endpoint names its cluster).
//! - `explain --config FILE [--jwks FILE|URL] TOKEN|-` walks the gateway's own decision for a
//!   token (the core's [`Gateway::explain`]) and prints every check, the status and the
//!   `WWW-Authenticate` a client would get. It is a small host: keys come from the config,
//!   `--jwks`, or an `http://` fetch, through the same key schedule the proxies run.
//! - `metadata --config FILE` prints each resource's RFC 9728 document and 401 challenge, as
//!   the gateway serves them.
//!
//! Nothing here prints a token: `explain` shows its header and registered claims only.

mod args;
mod explain;
mod fetch;

use std::process::ExitCode;

use mcp_edge_auth_core::config::{self, Host};
use mcp_edge_auth_core::crypto::default_provider;
use mcp_edge_auth_core::{Gateway, Request, Verdict};

use args::{read_input, Args};

const USAGE: &str = "\
mcp-edge-auth: checks MCP authorization configs and explains the gateway's decisions

usage: mcp-edge-auth <command> [options]

commands:
  check-config   load config files exactly as a host does, naming the field of any error
  explain        walk the gateway's decision for one token: every check, the status and
                 the WWW-Authenticate a client would get
  metadata       print each resource's RFC 9728 metadata and its 401 challenge
  help           this text, or `help <command>`

`mcp-edge-auth <command> --help` describes each command.
";

const CHECK_USAGE: &str = "\
usage: mcp-edge-auth check-config [--host envoy|module|worker] FILE|- [FILE…]

Loads each file with the core's config loader, the function every host calls at start-up:
the JSON format and its validation, the host's own rules, and every inline JWKS installed.

  --host HOST   envoy (the proxy-wasm filter: Envoy, Istio, Envoy Gateway), module (the
                native Envoy dynamic module) or worker (Cloudflare Workers). Without it, the
                file is checked for every host and must load in all of them.
  -             read the config from stdin

Exit status: 0 when every file loads, 1 when one does not (the error names the field),
2 for a usage error.
";

const METADATA_USAGE: &str = "\
usage: mcp-edge-auth metadata --config FILE

Prints, for each protected resource, the URL and body of its RFC 9728 Protected Resource
Metadata and the 401 challenge (WWW-Authenticate) of a request without a token, exactly
as the gateway serves them.
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "check-config" => check_config(rest),
        "explain" => explain::run(rest),
        "metadata" => metadata(rest),
        "help" | "--help" | "-h" => {
            match rest.first().map(String::as_str) {
                Some("check-config") => print!("{CHECK_USAGE}"),
                Some("explain") => print!("{}", explain::USAGE),
                Some("metadata") => print!("{METADATA_USAGE}"),
                _ => print!("{USAGE}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        "--version" | "-V" => {
            println!("mcp-edge-auth {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-edge-auth: {e}");
            ExitCode::from(2)
        }
    }
}

/// `check-config`: one line per file (and host), exit 1 if any refuses.
fn check_config(argv: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse(argv, &["host"], &[])?;
    if a.flag("help") {
        print!("{CHECK_USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    if a.positionals.is_empty() {
        return Err(format!(
            "check-config needs a FILE (or - for stdin)\n\n{CHECK_USAGE}"
        ));
    }
    let hosts: Vec<Host> = match a.get("host") {
        Some(h) => vec![Host::from_cli_name(h)
            .ok_or_else(|| format!("--host {h:?}: expected envoy, module or worker"))?],
        None => Host::ALL.to_vec(),
    };
    let mut failed = false;
    for file in &a.positionals {
        let bytes = match read_input(file) {
            Ok(b) => b,
            Err(e) => {
                println!("{file}: {e}");
                failed = true;
                continue;
            }
        };
        for &host in &hosts {
            let label = if hosts.len() > 1 {
                format!("{file} ({}): ", host.cli_name())
            } else {
                format!("{file}: ")
            };
            match config::load(&bytes, host, Box::new(default_provider())) {
                Ok(loaded) => {
                    let names: Vec<&str> = loaded
                        .config
                        .resources()
                        .iter()
                        .map(|r| r.resource.as_str())
                        .collect();
                    println!(
                        "{label}ok: {} resource(s) for the {}: {}",
                        names.len(),
                        host.label(),
                        names.join(", ")
                    );
                }
                Err(e) => {
                    println!("{label}{e}");
                    failed = true;
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Splits `scheme://authority/path` (the resource URLs of a valid config).
pub(crate) fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some(match rest.find('/') {
        Some(i) => {
            let (authority, path) = rest.split_at(i);
            (scheme, authority, path)
        }
        None => (scheme, rest, "/"),
    })
}

/// `metadata`: the PRM document and the 401 challenge of every resource.
fn metadata(argv: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse(argv, &["config"], &[])?;
    if a.flag("help") {
        print!("{METADATA_USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let file = a
        .get("config")
        .ok_or_else(|| format!("metadata needs --config FILE\n\n{METADATA_USAGE}"))?;
    let bytes = read_input(file)?;
    // Any host's rules: the documents do not depend on them.
    let loaded = config::load(&bytes, Host::Worker, Box::new(default_provider()))
        .map_err(|e| format!("{file}: {e}"))?;
    let gateway = Gateway::new(loaded.config);
    let mut cache = gateway.new_cache();
    for res in gateway.config().resources() {
        println!("== {}", res.resource);
        let prm = res.metadata_url().to_string();
        let (scheme, authority, path) =
            split_url(&prm).ok_or_else(|| format!("cannot split {prm}"))?;
        let req = Request::new("GET", scheme, authority, path, &[]);
        match gateway.decide(&req, 0, &loaded.keys, &mut cache) {
            Verdict::Respond(r) => {
                println!("metadata: {prm} ({})", r.status);
                let pretty = serde_json::from_str::<serde_json::Value>(&r.body)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or(r.body);
                println!("{pretty}");
            }
            _ => println!("metadata: {prm} is not served (unexpected)"),
        }
        let (scheme, authority, path) =
            split_url(&res.resource).ok_or_else(|| format!("cannot split {}", res.resource))?;
        let req = Request::new("POST", scheme, authority, path, &[]);
        if let Verdict::Respond(r) = gateway.decide(&req, 0, &loaded.keys, &mut cache) {
            println!("without a token: {}", r.status);
            for (name, value) in &r.headers {
                if name.eq_ignore_ascii_case("www-authenticate") {
                    println!("WWW-Authenticate: {value}");
                }
            }
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

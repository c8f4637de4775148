//! `mcp-edge-auth check-config FILE…`: loads each configuration exactly as a host would
//! (parse, validate, install inline JWKS) and prints the first error with its field path.
//! Use it in the CI of a deployment before shipping an Envoy, Istio or Worker config.

use std::io::Read;
use std::process::ExitCode;

use mcp_edge_auth_core::crypto::default_provider;
use mcp_edge_auth_core::{Config, KeyStore};

fn check(bytes: &[u8]) -> Result<String, String> {
    let config = Config::from_json(bytes).map_err(|e| e.to_string())?;
    KeyStore::new(&config, Box::new(default_provider())).map_err(|e| e.to_string())?;
    let names: Vec<&str> = config
        .resources()
        .iter()
        .map(|r| r.resource.as_str())
        .collect();
    Ok(format!(
        "ok: {} resource(s): {}",
        names.len(),
        names.join(", ")
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, files)) = args.split_first() else {
        eprintln!("usage: mcp-edge-auth check-config FILE|- [FILE…]");
        return ExitCode::from(2);
    };
    if cmd != "check-config" || files.is_empty() {
        eprintln!("usage: mcp-edge-auth check-config FILE|- [FILE…]");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for f in files {
        let bytes = if f == "-" {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v).map(|_| v)
        } else {
            std::fs::read(f)
        };
        match bytes
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|b| check(&b))
        {
            Ok(msg) => println!("{f}: {msg}"),
            Err(e) => {
                println!("{f}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

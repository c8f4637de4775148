//! The one network call of the CLI: `GET` of a JWKS over plain `http://` (a local or
//! in-cluster authorization server). HTTPS is left to `curl`: save the document and pass
//! `--jwks FILE`, so the CLI carries no TLS stack and never guesses trust roots.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use mcp_edge_auth_core::keys::schedule::Failure;

/// An HTTP answer: status, `Cache-Control`, body.
pub struct Fetched {
    pub status: u16,
    pub cache_control: Option<String>,
    pub body: Vec<u8>,
}

/// Why a fetch got no answer: the schedule's [`Failure`] and the words for the user.
pub type Failed = (Failure, String);

fn io_failure(e: &std::io::Error) -> Failure {
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Failure::Timeout,
        _ => Failure::Connection,
    }
}

/// `GET uri` (HTTP/1.0, so the server neither keeps the connection nor chunks the body).
pub fn get(uri: &str, timeout: Duration, max_body: usize) -> Result<Fetched, Failed> {
    let rest = uri.strip_prefix("http://").ok_or_else(|| {
        (
            Failure::NotSent,
            format!(
                "explain fetches only http:// URIs; save the JWKS first (curl -so jwks.json \
                 {uri}) and pass --jwks jwks.json"
            ),
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| {
            (
                Failure::Connection,
                format!("cannot resolve {authority}: {e}"),
            )
        })?
        .next()
        .ok_or_else(|| (Failure::Connection, format!("cannot resolve {authority}")))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        (
            io_failure(&e),
            format!("cannot connect to {authority}: {e}"),
        )
    })?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/jwk-set+json, application/json\r\n\
         User-Agent: mcp-edge-auth-cli\r\n\r\n"
    )
    .map_err(|e| (io_failure(&e), format!("cannot send to {authority}: {e}")))?;
    let mut raw = Vec::new();
    s.take((max_body + 16 * 1024) as u64)
        .read_to_end(&mut raw)
        .map_err(|e| (io_failure(&e), format!("reading from {authority}: {e}")))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            (
                Failure::Connection,
                format!("{authority} sent no complete HTTP response head"),
            )
        })?;
    let (head, body) = raw.split_at(split);
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            (
                Failure::Connection,
                format!("{authority} sent no HTTP status line"),
            )
        })?;
    let cache_control = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("cache-control"))
        .map(|(_, v)| v.trim().to_string());
    let body = body.get(4..).unwrap_or_default().to_vec();
    Ok(Fetched {
        status,
        cache_control,
        body,
    })
}

//! JWKS documents shared by every VM of a plugin, through proxy-wasm shared data.
//!
//! Envoy runs one Wasm VM per worker thread plus one on the main thread, and each VM has
//! its own [`KeyStore`](mcp_edge_auth_core::KeyStore). Without coordination every VM would
//! fetch every JWKS (and refetch on every unknown `kid`) on its own. Shared data is the one
//! thing all VMs of a `vm_id` can see, and it has compare-and-swap, so each JWKS source gets
//! two entries:
//!
//! * a small **lease** record, polled on every tick: who is fetching now (and until when the
//!   claim holds, so that a VM that dies mid-fetch does not block the others), a sequence
//!   number bumped by every finished attempt, when the last kid-triggered attempt started
//!   (so that every VM honours the same refetch cooldown) and which version of the document
//!   is current;
//! * the **document** record: version, fetch time, `Cache-Control` and the body itself,
//!   read only when the lease says the version changed.
//!
//! A VM claims the lease with compare-and-swap before it fetches; the others wait for the
//! sequence number to move and install the document it published. The records are plain
//! text (`v2 …` then the body), parsed without panicking on any content.
//!
//! When to fetch is not decided here: each VM's [`KeySchedule`](mcp_edge_auth_core::KeySchedule)
//! says so, and this module only makes sure that VMs asking at the same time share one fetch.

/// The lease record of one JWKS source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    /// Bumped by every finished attempt, successful or not.
    pub seq: u64,
    /// Who holds the claim (0: nobody).
    pub holder: u64,
    /// Until when (ms since the epoch) the claim holds.
    pub expires_ms: u64,
    /// When the latest kid-triggered attempt started (ms since the epoch; 0: never).
    pub last_kid_ms: u64,
    /// Whether the latest finished attempt succeeded.
    pub last_ok: bool,
    /// Version of the current document (0: none yet).
    pub version: u64,
}

impl Lease {
    /// Whether someone holds an unexpired claim at `now_ms`.
    pub fn busy(&self, now_ms: u64) -> bool {
        self.holder != 0 && now_ms < self.expires_ms
    }

    pub fn encode(&self) -> String {
        format!(
            "v2 {} {} {} {} {} {}",
            self.seq,
            self.holder,
            self.expires_ms,
            self.last_kid_ms,
            u8::from(self.last_ok),
            self.version
        )
    }

    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = core::str::from_utf8(bytes).ok()?;
        let mut it = text.split(' ');
        if it.next()? != "v2" {
            return None;
        }
        let mut num = || it.next().and_then(|s| s.parse::<u64>().ok());
        let lease = Lease {
            seq: num()?,
            holder: num()?,
            expires_ms: num()?,
            last_kid_ms: num()?,
            last_ok: num()? == 1,
            version: num()?,
        };
        Some(lease)
    }
}

/// A published JWKS document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document<'a> {
    pub version: u64,
    /// When it was fetched (s since the epoch): keys age from here, not from when a VM
    /// installed them.
    pub fetched_at: u64,
    pub cache_control: Option<&'a str>,
    pub body: &'a [u8],
}

impl<'a> Document<'a> {
    pub fn encode(&self) -> Vec<u8> {
        // Header values cannot hold CR or LF, but be sure: the record is line-based.
        let cc: String = self
            .cache_control
            .unwrap_or("")
            .chars()
            .filter(|c| *c != '\n' && *c != '\r')
            .collect();
        let head = format!("v1 {} {}\n{}\n", self.version, self.fetched_at, cc);
        let mut out = Vec::with_capacity(head.len() + self.body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(self.body);
        out
    }

    pub fn decode(bytes: &'a [u8]) -> Option<Document<'a>> {
        let nl = bytes.iter().position(|b| *b == b'\n')?;
        let (first, rest) = (bytes.get(..nl)?, bytes.get(nl + 1..)?);
        let nl2 = rest.iter().position(|b| *b == b'\n')?;
        let (cc, body) = (rest.get(..nl2)?, rest.get(nl2 + 1..)?);
        let first = core::str::from_utf8(first).ok()?;
        let mut it = first.split(' ');
        if it.next()? != "v1" {
            return None;
        }
        let version = it.next()?.parse().ok()?;
        let fetched_at = it.next()?.parse().ok()?;
        let cc = core::str::from_utf8(cc).ok()?;
        Some(Document {
            version,
            fetched_at,
            cache_control: (!cc.is_empty()).then_some(cc),
            body,
        })
    }
}

/// The shared-data keys of one JWKS source. Keyed by where the document comes from, not by
/// issuer or plugin: two plugins (or two issuers) that use the same JWKS share one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub lease: String,
    pub document: String,
}

impl Keys {
    pub fn new(cluster: &str, authority: &str, path: &str) -> Keys {
        let base = format!("mcp_edge_auth/v2/jwks/{cluster}/{authority}{path}");
        Keys {
            lease: format!("{base}#lease"),
            document: format!("{base}#document"),
        }
    }
}

/// Host side of the records (needs the proxy-wasm ABI).
pub(crate) mod host {
    use super::*;
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::Status;

    /// How often a compare-and-swap is retried before giving up (only other VMs updating
    /// the same record at the same instant make one fail).
    const CAS_TRIES: usize = 8;

    /// The lease and its CAS token; a missing or unreadable record reads as a fresh lease.
    pub fn read_lease(keys: &Keys) -> (Lease, Option<u32>) {
        match hostcalls::get_shared_data(&keys.lease) {
            Ok((Some(bytes), cas)) => (Lease::decode(&bytes).unwrap_or_default(), cas),
            Ok((None, cas)) => (Lease::default(), cas),
            Err(_) => (Lease::default(), None),
        }
    }

    /// Creates the lease record if there is none. The ABI has no create-if-absent, so two
    /// VMs starting at the same instant may both write the (identical) empty record.
    pub fn init(keys: &Keys) {
        if let (None, None) = read_lease_raw(keys) {
            let _ = hostcalls::set_shared_data(
                &keys.lease,
                Some(Lease::default().encode().as_bytes()),
                None,
            );
        }
    }

    fn read_lease_raw(keys: &Keys) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(&keys.lease).unwrap_or((None, None))
    }

    /// Claims the right to fetch until `expires_ms`. `None` when another VM holds it.
    pub fn claim(keys: &Keys, holder: u64, now_ms: u64, expires_ms: u64) -> Option<Lease> {
        let (lease, cas) = read_lease(keys);
        if lease.busy(now_ms) {
            return None;
        }
        let claimed = Lease {
            holder,
            expires_ms,
            ..lease
        };
        match hostcalls::set_shared_data(&keys.lease, Some(claimed.encode().as_bytes()), cas) {
            Ok(()) => Some(claimed),
            Err(_) => None,
        }
    }

    /// Records a finished attempt (kid-triggered ones with their start, `kid_started_ms`),
    /// publishing `document` (with the new version filled in) when it succeeded, and
    /// releases the claim if `holder` still holds it. Returns the lease as written, or `None`
    /// if every CAS lost (the attempt is then simply not recorded; the claim expires on its
    /// own).
    pub fn finish(
        keys: &Keys,
        holder: u64,
        kid_started_ms: Option<u64>,
        fetched: Option<(u64, Option<&str>, &[u8])>,
    ) -> Option<Lease> {
        for _ in 0..CAS_TRIES {
            let (cur, cas) = read_lease(keys);
            let seq = cur.seq.wrapping_add(1);
            let mut next = Lease {
                seq,
                last_kid_ms: cur.last_kid_ms.max(kid_started_ms.unwrap_or(0)),
                last_ok: fetched.is_some(),
                ..cur
            };
            if cur.holder == holder {
                next.holder = 0;
                next.expires_ms = 0;
            }
            if let Some((fetched_at, cache_control, body)) = fetched {
                next.version = seq;
                let doc = Document {
                    version: seq,
                    fetched_at,
                    cache_control,
                    body,
                };
                // The document goes first: whoever sees the new version finds it.
                if hostcalls::set_shared_data(&keys.document, Some(&doc.encode()), None).is_err() {
                    return None;
                }
            }
            match hostcalls::set_shared_data(&keys.lease, Some(next.encode().as_bytes()), cas) {
                Ok(()) => return Some(next),
                Err(Status::CasMismatch) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// The current document, if any.
    pub fn read_document(keys: &Keys) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(&keys.document)
            .ok()
            .and_then(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_round_trip() {
        let l = Lease {
            seq: 7,
            holder: 123456789,
            expires_ms: 1_700_000_000_000,
            last_kid_ms: 1_700_000_000_000,
            last_ok: true,
            version: 6,
        };
        assert_eq!(Lease::decode(l.encode().as_bytes()), Some(l));
        assert_eq!(
            Lease::decode(Lease::default().encode().as_bytes()),
            Some(Lease::default())
        );
    }

    #[test]
    fn lease_rejects_garbage() {
        for bad in [
            &b""[..],
            b"v1",
            b"v1 1 2 3 4 1 5",
            b"v2 1 2 3 4 1",
            b"v1 a b c d e f",
            b"\xff\xfe",
        ] {
            assert_eq!(Lease::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lease_busy() {
        let l = Lease {
            holder: 1,
            expires_ms: 100,
            ..Lease::default()
        };
        assert!(l.busy(99));
        assert!(!l.busy(100));
        assert!(!Lease { holder: 0, ..l }.busy(0));
    }

    #[test]
    fn document_round_trip() {
        let body = b"{\"keys\":[]}\n\nwith newlines\n";
        let d = Document {
            version: 3,
            fetched_at: 42,
            cache_control: Some("max-age=300"),
            body,
        };
        let enc = d.encode();
        assert_eq!(Document::decode(&enc), Some(d));
        let d = Document {
            version: 1,
            fetched_at: 2,
            cache_control: None,
            body: b"",
        };
        let enc = d.encode();
        assert_eq!(Document::decode(&enc), Some(d));
    }

    #[test]
    fn document_strips_line_breaks_from_cache_control() {
        let d = Document {
            version: 1,
            fetched_at: 2,
            cache_control: Some("max-age=1\r\nevil"),
            body: b"x",
        };
        let enc = d.encode();
        let back = Document::decode(&enc).unwrap();
        assert_eq!(back.cache_control, Some("max-age=1evil"));
        assert_eq!(back.body, b"x");
    }

    #[test]
    fn document_rejects_garbage() {
        for bad in [
            &b""[..],
            b"v1 1 2",
            b"v1 1 2\n",
            b"v9 1 2\n\n",
            b"v1 x 2\n\n",
            b"\xff\n\n",
        ] {
            assert_eq!(Document::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_are_per_source() {
        let a = Keys::new("jwks", "idp.example", "/jwks");
        let b = Keys::new("jwks", "idp.example", "/other");
        assert_ne!(a.lease, b.lease);
        assert_ne!(a.lease, a.document);
    }
}

//! What each host checks when it loads a configuration, in one place: the hosts call
//! [`load`] and so does `mcp-edge-auth check-config --host`, so a config the CLI accepts for
//! a host is one that host starts with, and the error names the same field.

use alloc::boxed::Box;

use super::{Config, ConfigError};
use crate::crypto::CryptoProvider;
use crate::keys::KeyStore;

/// A host that loads the one JSON config format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// The proxy-wasm filter (Envoy, Istio `WasmPlugin`, Envoy Gateway).
    EnvoyWasm,
    /// The native Envoy dynamic module.
    EnvoyModule,
    /// The Cloudflare Worker (proxy Worker and library).
    Worker,
}

impl Host {
    /// Every host, in the order the CLI lists them.
    pub const ALL: [Host; 3] = [Host::EnvoyWasm, Host::EnvoyModule, Host::Worker];

    /// The name `check-config --host` takes: `envoy`, `module` or `worker`.
    pub fn cli_name(self) -> &'static str {
        match self {
            Host::EnvoyWasm => "envoy",
            Host::EnvoyModule => "module",
            Host::Worker => "worker",
        }
    }

    /// The host named `name` (`envoy`/`envoy-wasm`, `module`/`envoy-module`, `worker`).
    pub fn from_cli_name(name: &str) -> Option<Host> {
        match name {
            "envoy" | "envoy-wasm" | "wasm" => Some(Host::EnvoyWasm),
            "module" | "envoy-module" => Some(Host::EnvoyModule),
            "worker" | "workers" => Some(Host::Worker),
            _ => None,
        }
    }

    /// How messages name the host.
    pub fn label(self) -> &'static str {
        match self {
            Host::EnvoyWasm => "Envoy filter",
            Host::EnvoyModule => "Envoy module",
            Host::Worker => "Worker",
        }
    }

    /// Where this host's operator puts the JSON, for the error about an empty document.
    fn empty_hint(self) -> &'static str {
        match self {
            Host::EnvoyWasm => {
                "the plugin configuration is empty; pass the JSON config as a \
                 google.protobuf.StringValue (Istio: WasmPlugin.spec.pluginConfig; Envoy \
                 Gateway: EnvoyExtensionPolicy.spec.wasm[].config)"
            }
            Host::EnvoyModule => {
                "the filter configuration is empty; pass the JSON config as filter_config \
                 (a google.protobuf.StringValue)"
            }
            Host::Worker => {
                "the configuration is empty; set MCP_EDGE_AUTH_CONFIG (a JSON string or \
                 object) in the Worker's environment"
            }
        }
    }

    /// Whether the host reaches other servers only through named upstreams: Envoy calls
    /// clusters, not URLs, so every remote JWKS and introspection endpoint must name one.
    fn needs_clusters(self) -> bool {
        matches!(self, Host::EnvoyWasm | Host::EnvoyModule)
    }
}

/// A configuration as a host holds it after loading: validated, with its inline JWKS
/// installed in a key store.
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// The key store, with every inline JWKS installed (remote ones are fetched later).
    pub keys: KeyStore,
}

/// Loads `json` as `host` does at start-up: not empty, the one format's parse and
/// validation, the host's own rules (Envoy: every remote endpoint names its cluster), and
/// every inline JWKS installed with `provider`. The error names the offending field.
pub fn load(
    json: &[u8],
    host: Host,
    provider: Box<dyn CryptoProvider>,
) -> Result<Loaded, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new("", host.empty_hint()));
    }
    let config = Config::from_json(json)?;
    if host.needs_clusters() {
        config.require_clusters(host.label())?;
    }
    let keys = KeyStore::new(&config, provider)?;
    Ok(Loaded { config, keys })
}

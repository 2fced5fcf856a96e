//! `idmint.toml`: the one typed configuration of a data directory, with
//! environment overrides applied by the edges.

use std::collections::BTreeMap;
use std::path::Path;

use idmint_pki::{KeyType, Profile};
use serde::{Deserialize, Serialize};

use crate::FlowError;

/// The configuration file's name inside the data directory.
pub const CONFIG_FILE: &str = "idmint.toml";

/// A data directory's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The organisation named in CA and device subjects (`{org}`).
    pub org: String,
    /// The store URL; the SQLite file in the data directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The issuing CA used when a command names none.
    #[serde(default = "default_ca")]
    pub default_ca: String,
    /// The key type for new CAs and server-side generated device keys.
    #[serde(default = "default_key_type")]
    pub key_type: KeyType,
    /// Certificate profiles by name; `device` is built in unless overridden.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    /// `idmint serve` settings (`[server]`); defaults when absent.
    #[serde(default)]
    pub server: ServerConfig,
    /// Fleet provisioning settings (`[fleet]`); defaults when absent.
    #[serde(default)]
    pub fleet: FleetConfig,
    /// MQTT endpoint session limits (`[mqtt]`); defaults when absent.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// CRL files for outside brokers (`[crl]`); off when absent.
    #[serde(default)]
    pub crl: CrlConfig,
    /// Audit checkpoints written by `idmint serve` (`[audit]`); off when absent.
    #[serde(default)]
    pub audit: AuditConfig,
}

/// `[audit]`: audit checkpoints that `idmint serve` writes on a schedule
/// (see `idmint audit checkpoint`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Directory for `checkpoint-<records>.json` and `latest.json`; best on
    /// another machine's mount or synced away. None: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_dir: Option<std::path::PathBuf>,
    /// Seconds between checkpoints (one is written only when the log grew).
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_dir: None,
            checkpoint_interval_secs: 300,
        }
    }
}

/// `[mqtt]`: limits of the MQTT endpoint's sessions and connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Seconds between re-checks of every session's certificate (status
    /// and validity); a session whose certificate was revoked, deactivated
    /// or has expired is closed within this time.
    pub recheck_secs: u64,
    /// Topic filters one session may hold at most.
    pub max_subscriptions: usize,
    /// Open MQTT connections at most, in all (more are closed at accept).
    pub max_connections: usize,
    /// Open MQTT connections at most from one client address.
    pub max_connections_per_address: usize,
    /// Seconds a client has to finish its TLS handshake, and then again to
    /// send its CONNECT; a client that trickles either is closed.
    pub connect_timeout_secs: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            recheck_secs: 10,
            max_subscriptions: 64,
            max_connections: 8192,
            max_connections_per_address: 512,
            connect_timeout_secs: 10,
        }
    }
}

/// `[crl]`: CRL files that `idmint serve` keeps current for outside
/// brokers (mosquitto's `crlfile`, EMQX, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrlConfig {
    /// Directory for `<ca-name>.crl.pem` and `all.crl.pem`; none: off.
    pub dir: Option<std::path::PathBuf>,
    /// Command run with `sh -c` after the files changed (e.g. a broker's
    /// reload).
    pub reload_cmd: Option<String>,
}

/// `[fleet]`: fleet provisioning over MQTT (scenario 5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// MQTT listen address of `idmint serve`, `ADDR:PORT`.
    pub mqtt_listen: String,
    /// Seconds a certificate ownership token stays valid.
    pub token_lifetime_secs: u64,
    /// Provisioning requests per minute per claim certificate (0: no limit).
    pub claim_rate_per_minute: u32,
    /// Days a claim certificate made by `idmint claim create` is valid.
    pub claim_valid_days: u32,
    /// Minutes a trusted-user (installer) claim certificate is valid.
    pub trusted_user_claim_minutes: u32,
    /// Default pre-provisioning hook timeout, milliseconds.
    pub hook_timeout_ms: u64,
    /// Largest MQTT packet accepted, bytes.
    pub max_packet_bytes: usize,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            mqtt_listen: "0.0.0.0:8883".into(),
            token_lifetime_secs: 3600,
            claim_rate_per_minute: 600,
            claim_valid_days: 3650,
            trusted_user_claim_minutes: 5,
            hook_timeout_ms: 5000,
            max_packet_bytes: 128 * 1024,
        }
    }
}

/// `[server]`: the HTTPS endpoint of `idmint serve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address, `ADDR:PORT`.
    pub listen: String,
    /// Host names (DNS names or IP addresses) for the server certificate;
    /// `localhost` and `127.0.0.1` are always included.
    pub hosts: Vec<String>,
    /// A server certificate chain (PEM) to use instead of issuing one.
    pub cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    pub key: Option<std::path::PathBuf>,
    /// Request body limit, bytes.
    pub body_limit: usize,
    /// Requests per second per client (0: no limit).
    pub rate_limit: u32,
    /// Burst allowed above the rate.
    pub rate_burst: u32,
    /// Seconds a replaced certificate stays ACTIVE after re-enrollment.
    pub rotation_overlap_secs: u64,
    /// Seconds a remote station's certificate may stay PENDING_ACTIVATION
    /// (issued, never confirmed on its device, e.g. the station was killed)
    /// before the server spoils it.
    pub station_pending_timeout_secs: u64,
    /// Open connections at most, in all (more are closed at accept).
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_connections_per_address: usize,
    /// Seconds a client has to finish the TLS handshake, and then each
    /// request's headers (also the idle time between keep-alive requests).
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers are
    /// in; a client that trickles it gets 408 and its connection is closed.
    pub body_timeout_secs: u64,
    /// The URL relying parties reach this server at, e.g.
    /// `https://pki.example.com` (a load balancer or CDN in front of every
    /// server of the store). When set, every certificate our CAs issue
    /// names `{public_url}/crl/{ca}.crl` as its CRL distribution point and
    /// `{public_url}/ocsp` as its OCSP responder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Revoked certificates on a CA's CRL from which `/crl/{ca}.crl` is a
    /// base CRL, reissued only as its validity runs down and naming
    /// `{public_url}/crl/{ca}-delta.crl` (freshestCRL), where a delta CRL
    /// lists what was revoked since; 0: complete CRLs only. Needs
    /// `public_url` (the delta's address must be absolute).
    pub delta_crl_after: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:8443".into(),
            hosts: Vec::new(),
            cert: None,
            key: None,
            body_limit: 64 * 1024,
            rate_limit: 200,
            rate_burst: 400,
            rotation_overlap_secs: 7 * 24 * 3600,
            station_pending_timeout_secs: 3600,
            max_connections: 8192,
            max_connections_per_address: 512,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            public_url: None,
            delta_crl_after: 10_000,
        }
    }
}

fn default_ca() -> String {
    "issuing".to_string()
}

fn default_key_type() -> KeyType {
    KeyType::P256
}

impl Config {
    /// A fresh configuration for `init`.
    pub fn new(org: &str, key_type: KeyType, store: Option<String>) -> Self {
        let mut profiles = BTreeMap::new();
        profiles.insert("device".to_string(), Profile::device());
        Config {
            org: org.to_string(),
            store,
            default_ca: default_ca(),
            key_type,
            profiles,
            server: ServerConfig::default(),
            fleet: FleetConfig::default(),
            mqtt: MqttConfig::default(),
            crl: CrlConfig::default(),
            audit: AuditConfig::default(),
        }
    }

    /// Reads and validates `DIR/idmint.toml`.
    pub fn load(data_dir: &Path) -> Result<Config, FlowError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                FlowError::NotInitialised(data_dir.to_path_buf())
            } else {
                FlowError::io(&path, e)
            }
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| FlowError::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(url) = config.server.public_url.take() {
            let url = url.trim_end_matches('/').to_string();
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() > "https://".len()
                && url.bytes().all(|b| b.is_ascii_graphic())
                && !url.contains(['?', '#']);
            if !ok {
                return Err(FlowError::Config {
                    path,
                    reason: format!(
                        "[server] public_url = {url:?}: give the http(s) URL relying parties reach this server at, e.g. \"https://pki.example.com\""
                    ),
                });
            }
            config.server.public_url = Some(url);
        }
        for (name, profile) in &config.profiles {
            profile.validate(name).map_err(|e| FlowError::Config {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(config)
    }

    /// The file's text.
    pub fn to_toml(&self) -> Result<String, FlowError> {
        toml::to_string_pretty(self).map_err(|e| FlowError::Invalid(e.to_string()))
    }

    /// A profile by name (`device` is always available).
    pub fn profile(&self, name: &str) -> Result<Profile, FlowError> {
        if let Some(p) = self.profiles.get(name) {
            return Ok(p.clone());
        }
        match name {
            "device" => Ok(Profile::device()),
            _ => {
                let mut known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
                if !known.contains(&"device") {
                    known.push("device");
                }
                Err(FlowError::UnknownProfile {
                    name: name.to_string(),
                    known: known.join(", "),
                })
            }
        }
    }
}

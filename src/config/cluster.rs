//! Cluster settings (`docs/protocol.md` section 13): the NATS server that carries events between
//! the nodes sharing one PostgreSQL database, the subject prefix that keeps deployments (and tests)
//! apart on one NATS server, and how long a silent node is given before the others declare it lost.

use std::time::Duration;

use super::Settings;
use super::env::seconds;

/// How this node joins a cluster; without `NATS_URL` it runs alone.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ClusterSettings {
    /// NATS server to run as one node of a cluster (`nats://host:4222`; several, comma
    /// separated, for a NATS cluster). Needs a PostgreSQL DATABASE_URL shared by every node.
    /// Unset: this node runs alone.
    #[arg(long, env = "NATS_URL", value_parser = nats_url)]
    pub nats_url: Option<NatsUrl>,
    /// Prefix of every NATS subject this cluster uses (letters, digits, '-', '_'): clusters
    /// sharing one NATS server must each have their own.
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = "switchboard", value_parser = subject_prefix)]
    pub subject_prefix: String,
    /// Seconds a node may stay silent on the bus before the others declare it lost: its
    /// users leave presence and its open sessions are closed with reason `node_lost`.
    #[arg(long, env = "NODE_TIMEOUT_SECS", default_value = "15", value_parser = seconds)]
    pub node_timeout: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Settings::defaults().cluster
    }
}

/// A NATS URL; `Debug` hides any credentials in it.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl(String);

impl NatsUrl {
    /// A NATS URL (or several, comma separated), as `NATS_URL` takes it.
    pub fn new(url: &str) -> Result<Self, String> {
        nats_url(url)
    }

    /// The URL as given, credentials included (for connecting).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without user and password, for logs and errors.
    pub fn redacted(&self) -> String {
        self.0
            .split(',')
            .map(|url| match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}://[redacted]@{}", &url[..scheme], &url[at + 1..])
                }
                _ => url.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl std::fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

fn nats_url(s: &str) -> Result<NatsUrl, String> {
    let s = s.trim();
    if s.split(',').any(|url| url.trim().is_empty()) {
        return Err("expected nats://host:port, or several separated by commas".into());
    }
    Ok(NatsUrl(s.to_owned()))
}

fn subject_prefix(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err("1 to 64 letters, digits, '-' or '_'".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_in_debug() {
        let url = NatsUrl("nats://app:s3cret@nats-1:4222,nats://nats-2:4222".into());
        let shown = format!("{url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("nats-1:4222") && shown.contains("nats-2:4222"));
    }

    #[test]
    fn prefixes_are_plain_subject_tokens() {
        assert!(subject_prefix("sb_test-1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>"] {
            assert!(subject_prefix(bad).is_err(), "{bad:?}");
        }
    }
}

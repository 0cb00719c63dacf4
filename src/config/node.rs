//! `NODE_ID`: the name of this gateway among the nodes sharing one PostgreSQL database. The
//! store writes it into `sessions.node_id` and `server_runs.node_id`, so that crash recovery
//! closes only this node's rows: another node's open sessions are alive. Unset, it is the host
//! name (one node per host is the common layout), else `default`.

/// The longest node id: a column value and a log field, not a document.
const MAX_LEN: usize = 64;

/// A node id: 1 to 64 letters, digits, `-`, `_` or `.` (a host name fits; quotes, spaces
/// and slashes, which would be awkward in logs and operators' SQL, do not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId(String);

impl NodeId {
    /// Accepts a valid node id, else says why not.
    pub fn parse(id: &str) -> Result<Self, String> {
        if id.is_empty() || id.len() > MAX_LEN {
            return Err(format!("must be 1 to {MAX_LEN} characters long"));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err("only letters, digits, '-', '_' and '.' are allowed".into());
        }
        Ok(Self(id.to_owned()))
    }

    /// The default: the host name when it is a valid node id, else `default`.
    pub fn from_host() -> Self {
        whoami::fallible::hostname()
            .ok()
            .and_then(|host| Self::parse(&host).ok())
            .unwrap_or_else(|| Self("default".into()))
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::NodeId;

    #[test]
    fn node_ids_are_short_and_plain() {
        for good in ["default", "node-1", "gw_2.eu-west", &"a".repeat(64)] {
            assert!(NodeId::parse(good).is_ok(), "{good} is accepted");
        }
        for (bad, why) in [
            ("", "empty"),
            (&"a".repeat(65) as &str, "longer than 64"),
            ("node 1", "a space"),
            ("node'1", "a quote"),
            ("eu/1", "a slash"),
            ("nœud", "not ASCII"),
        ] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?} is refused: {why}");
        }
    }

    #[test]
    fn the_default_is_a_valid_node_id() {
        let id = NodeId::from_host();
        assert_eq!(NodeId::parse(id.as_str()), Ok(id));
    }
}

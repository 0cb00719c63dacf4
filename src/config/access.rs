//! Access settings (`docs/protocol.md` section 14): who may join a room when no policy names
//! it (`ROOM_JOIN_DEFAULT`), where the room policies are written (`ROOM_POLICIES`, a file: a
//! table of patterns outgrows one variable), who may broadcast to everyone
//! (`BROADCAST_ROLES`), and the application's join hook (`JOIN_HOOK_*`). The policy file is
//! read and checked by the `access` module at start and by `switchboard check-config`; this
//! module only names it.

use std::path::PathBuf;
use std::time::Duration;

use super::Settings;
use super::env::{at_least, choice, list};

/// The join rule of rooms no policy names (`ROOM_JOIN_DEFAULT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RoomJoinDefault {
    /// Any user may join any room, except that a token carrying a `rooms` claim is held to it
    /// (the default, the seed's behaviour for tokens without the claim).
    #[default]
    Anyone,
    /// Only the rooms the token's `rooms` claim grants; users whose role is in `ADMIN_ROLES`
    /// go anywhere.
    Token,
}

/// Room access.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AccessSettings {
    /// Who may join a room that no policy of ROOM_POLICIES names: `anyone` (the default; a
    /// token carrying a `rooms` claim is still held to it) or `token` (only the rooms the
    /// token's `rooms` claim grants; server-side members and roles in ADMIN_ROLES go anywhere).
    #[arg(long, env = "ROOM_JOIN_DEFAULT", default_value = "anyone", value_parser = choice::<RoomJoinDefault>)]
    pub join_default: RoomJoinDefault,
    /// A JSON file of room policies by room-name pattern (who may join, who may post, what
    /// history a member replays; first match wins). Unset: every room follows
    /// ROOM_JOIN_DEFAULT. `switchboard check-config` prints the effective table.
    #[arg(long, env = "ROOM_POLICIES")]
    pub policies_file: Option<PathBuf>,
    /// Roles whose clients may `send-message` to everyone (comma-separated); empty, the
    /// default: anyone may. Roles in ADMIN_ROLES always may.
    #[arg(long, env = "BROADCAST_ROLES", default_value = "", value_parser = list)]
    pub broadcast_roles: ::std::vec::Vec<String>,
    /// The application's endpoint asked whether a user may join a room whose policy says
    /// `"join": "hook"` (an HTTP POST, signed with JOIN_HOOK_SECRET).
    #[arg(long, env = "JOIN_HOOK_URL")]
    pub join_hook_url: Option<String>,
    /// The secret the join hook's requests are signed with (Standard Webhooks: `whsec_` +
    /// base64).
    #[arg(long, env = "JOIN_HOOK_SECRET", hide_env_values = true)]
    pub join_hook_secret: Option<String>,
    /// How long the gateway waits for the join hook before refusing (`hook_unavailable`), in
    /// milliseconds.
    #[arg(long, env = "JOIN_HOOK_TIMEOUT_MS", default_value = "2000", value_parser = millis)]
    pub join_hook_timeout: Duration,
    /// How long the hook's answer for one user and room is reused, in seconds (0: ask every
    /// time). Refusals are cached for the same time; errors are not.
    #[arg(long, env = "JOIN_HOOK_CACHE_SECS", default_value = "30", value_parser = secs)]
    pub join_hook_cache: Duration,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Settings::defaults().access
    }
}

fn millis(s: &str) -> Result<Duration, String> {
    at_least(10_u64)(s).map(Duration::from_millis)
}

fn secs(s: &str) -> Result<Duration, String> {
    at_least(0_u64)(s).map(Duration::from_secs)
}

//! Who may join a room when nothing else says (`ROOM_JOIN_DEFAULT`): the seed let anyone join
//! any room; an operator can require the token's `rooms` claim instead. Room policies by
//! pattern, server-side membership and the join hook come later and sit in front of this rule.

/// The join rule of every room (`ROOM_JOIN_DEFAULT`).
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

//! Room membership made by the application (admins only; `docs/protocol.md` section 12):
//!
//! - `PUT /websocket/rooms/{room}/members/{userId}` → adds the user (online or not)
//! - `DELETE /websocket/rooms/{room}/members/{userId}` → removes it (`left-room`, reason
//!   `removed`)
//! - `GET /websocket/rooms/{room}/members` → the members, online or not
//! - `GET /websocket/users/{userId}/rooms` → the rooms of a user
//!
//! A member added here holds whatever the room's join rule and the user's token say (a
//! `"join": "members"` room is made of them). The handlers parse the path and call the hub's
//! membership methods (`hub/membership.rs`), as the embedded API does.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Admin;
use super::openapi::MemberRefusals;
use crate::commands::CommandError;
use crate::hub::{Hub, MemberInfo};
use crate::protocol::payloads::{RoomName, UserId};

/// The answer of an add.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct MemberAdded {
    /// The room.
    room: String,
    /// The user.
    user_id: String,
    /// Whether the user was not a member before (false: it was, and its membership is the
    /// application's now).
    added: bool,
}

/// The answer of a removal.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct MemberRemoved {
    /// The room.
    room: String,
    /// The user.
    user_id: String,
    /// Whether the user was a member.
    removed: bool,
}

/// A room's members.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RoomMembers {
    /// The room.
    room: String,
    /// Online or not, by user id.
    members: Vec<Member>,
}

/// One member of a room.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Member {
    /// The user.
    user_id: String,
    /// Whether it has a live connection (in a cluster, on any node).
    online: bool,
    /// Whether the application added it (then it holds whatever the room's rules say).
    added_by_server: bool,
}

impl From<MemberInfo> for Member {
    fn from(m: MemberInfo) -> Self {
        Self {
            user_id: m.user_id,
            online: m.online,
            added_by_server: m.by_server,
        }
    }
}

/// A user's rooms.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserRooms {
    /// The user.
    user_id: String,
    /// By name.
    rooms: Vec<String>,
}

/// The path's room and user, or 400 (`bad_payload`) naming which is wrong.
fn parse(room: &str, user_id: &str) -> Result<(RoomName, UserId), ApiError> {
    let room = RoomName::parse(room).map_err(CommandError::Protocol)?;
    let user_id = UserId::parse(user_id).map_err(CommandError::Protocol)?;
    Ok((room, user_id))
}

/// Add a user to a room.
///
/// The user may be offline or may never have connected. Its connections (on every node)
/// hear `joined-room` and the room's `user-joined-room` when it was not a member; from then
/// on it receives the room's messages and may post as the room's post rule allows. The
/// membership holds whatever the room's join rule and the user's token say, survives
/// restarts, and ends only by `leave-room` or a removal. Admins only.
#[utoipa::path(
    put,
    path = "/websocket/rooms/{room}/members/{userId}",
    tag = "rooms",
    params(
        ("room" = String, Path, description = "The room's name."),
        ("userId" = String, Path, description = "The user's id (`sub`).")
    ),
    responses((status = 200, description = "added", body = MemberAdded), MemberRefusals)
)]
pub(super) async fn add_member(
    State(hub): State<Hub>,
    _: Admin,
    Path((room, user_id)): Path<(String, String)>,
) -> Result<Json<MemberAdded>, ApiError> {
    let (room, user) = parse(&room, &user_id)?;
    let added = hub
        .add_member(&room, user.as_str())
        .map_err(CommandError::Hub)?;
    Ok(Json(MemberAdded {
        room: room.as_str().to_owned(),
        user_id,
        added,
    }))
}

/// Remove a user from a room.
///
/// Whoever made the membership. The user's connections (on every node) hear `left-room`
/// with `reason: "removed"` and nothing of the room after it; the room hears
/// `user-left-room`. Admins only.
#[utoipa::path(
    delete,
    path = "/websocket/rooms/{room}/members/{userId}",
    tag = "rooms",
    params(
        ("room" = String, Path, description = "The room's name."),
        ("userId" = String, Path, description = "The user's id (`sub`).")
    ),
    responses((status = 200, description = "removed", body = MemberRemoved), MemberRefusals)
)]
pub(super) async fn remove_member(
    State(hub): State<Hub>,
    _: Admin,
    Path((room, user_id)): Path<(String, String)>,
) -> Result<Json<MemberRemoved>, ApiError> {
    let (room, user) = parse(&room, &user_id)?;
    let removed = hub
        .remove_member(&room, user.as_str())
        .map_err(CommandError::Hub)?;
    Ok(Json(MemberRemoved {
        room: room.as_str().to_owned(),
        user_id,
        removed,
    }))
}

/// A room's members, online or not.
///
/// Admins only.
#[utoipa::path(
    get,
    path = "/websocket/rooms/{room}/members",
    tag = "rooms",
    params(("room" = String, Path, description = "The room's name.")),
    responses((status = 200, description = "members", body = RoomMembers), MemberRefusals)
)]
pub(super) async fn members(
    State(hub): State<Hub>,
    _: Admin,
    Path(room): Path<String>,
) -> Result<Json<RoomMembers>, ApiError> {
    let room = RoomName::parse(&room).map_err(CommandError::Protocol)?;
    let members = hub.room_members(&room).into_iter().map(Member::from);
    Ok(Json(RoomMembers {
        room: room.as_str().to_owned(),
        members: members.collect(),
    }))
}

/// The rooms a user is a member of.
///
/// Admins only.
#[utoipa::path(
    get,
    path = "/websocket/users/{userId}/rooms",
    tag = "rooms",
    params(("userId" = String, Path, description = "The user's id (`sub`).")),
    responses((status = 200, description = "rooms", body = UserRooms), MemberRefusals)
)]
pub(super) async fn user_rooms(
    State(hub): State<Hub>,
    _: Admin,
    Path(user_id): Path<String>,
) -> Result<Json<UserRooms>, ApiError> {
    let user = UserId::parse(&user_id).map_err(CommandError::Protocol)?;
    Ok(Json(UserRooms {
        rooms: hub.user_rooms(user.as_str()),
        user_id,
    }))
}

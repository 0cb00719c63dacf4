//! [`GatewayHandle`]: the embedded Rust API, what a back end's notification service needs.
//! (README "Embedding in your Rust service"; `examples/notification_service.rs`.)
//! A cheap, cloneable handle that application code keeps next to the router it mounted.
//! It is one more caller of the hub: what it sends is stored, gets an id, and is queued for
//! offline users, exactly like a message from a client or the REST API.
//!
//! ```no_run
//! # async fn demo(settings: switchboard::Settings) -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = switchboard::EmbeddedGateway::build(settings).await?;
//! let app = axum::Router::new().merge(gateway.router());
//! let handle = gateway.handle();
//! let delivered = handle
//!     .send_to_user("alice", "notification", &serde_json::json!({ "message": "hi", "type": "info" }))
//!     .await;
//! # let _ = (app, delivered); Ok(()) }
//! ```

use serde::Serialize;

use crate::commands::publish_event::{BackendEvent, publish_event};
use crate::commands::users_stats;
use crate::hub::{
    CloseReason, Hub, HubError, MemberInfo, Publish, PublishError, Published, Target,
};
use crate::protocol::payloads::{RoomName, UserId};
use crate::protocol::wire::{UserObject, UsersStats, system_user};
use crate::store::Store;

/// Why the embedded API could not send.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The payload could not be turned into JSON.
    #[error("payload is not serializable to JSON: {0}")]
    Payload(#[from] serde_json::Error),
    /// The hub refused (a full offline queue), or the message could not be stored.
    #[error(transparent)]
    NotSent(#[from] PublishError),
}

/// Why the embedded API refused a room membership call.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The room name or the user id breaks its rule; the message names which and why.
    #[error("{0}")]
    Invalid(String),
    /// The hub refused.
    #[error(transparent)]
    Refused(#[from] HubError),
}

/// Sends to users, roles and everyone, and reads who is online; cheap to clone.
#[derive(Clone)]
pub struct GatewayHandle {
    hub: Hub,
    /// The session history behind [`GatewayHandle::stats`].
    store: Store,
    /// `MAX_QUEUED_PER_USER`: the offline queue bound applies to the embedded API too.
    queue_limit: u64,
}

impl GatewayHandle {
    pub(crate) fn new(hub: Hub, store: Store, queue_limit: u64) -> Self {
        Self {
            hub,
            store,
            queue_limit,
        }
    }

    /// Sends `event` with `payload` to every connection of `user_id`. Returns whether it
    /// reached a live connection; when the user is offline (or unknown) it is queued for
    /// their next connection and this returns `false`, as a Socket.IO gateway's `sendToUser` does.
    pub async fn send_to_user(&self, user_id: &str, event: &str, payload: &impl Serialize) -> bool {
        match self
            .publish(Target::User(user_id.to_owned()), event, payload)
            .await
        {
            Ok(p) => p.delivered > 0,
            Err(e) => {
                tracing::warn!(user_id, event, error = %e, "send_to_user failed");
                false
            }
        }
    }

    /// Sends `event` to every connection. Returns how many connections took it.
    pub async fn broadcast_to_all(&self, event: &str, payload: &impl Serialize) -> usize {
        self.publish(Target::All, event, payload)
            .await
            .map(|p| p.delivered)
            .unwrap_or_else(|e| {
                tracing::warn!(event, error = %e, "broadcast_to_all failed");
                0
            })
    }

    /// Sends `event` to every connection whose user has `role`. Returns how many took it.
    pub async fn broadcast_to_role(
        &self,
        role: &str,
        event: &str,
        payload: &impl Serialize,
    ) -> usize {
        self.publish(Target::Role(role.to_owned()), event, payload)
            .await
            .map(|p| p.delivered)
            .unwrap_or_else(|e| {
                tracing::warn!(role, event, error = %e, "broadcast_to_role failed");
                0
            })
    }

    /// The general form: stores and routes `event` to `target`, waits until it is durable,
    /// and returns its id and delivery counts. An object payload gets `id`, `from` (the
    /// `system` user) and `timestamp` added unless it has them already, so that clients can
    /// de-duplicate and recover it like any other message.
    pub async fn publish(
        &self,
        target: Target,
        event: &str,
        payload: &impl Serialize,
    ) -> Result<Published, SendError> {
        let event = BackendEvent {
            target,
            event,
            payload: serde_json::to_value(payload)?,
            from: serde_json::to_value(system_user())?,
            idempotency_key: None,
        };
        let origin = Publish::system(self.queue_limit);
        Ok(publish_event(&self.hub, origin, event).await?)
    }

    /// Distinct users online.
    pub fn active_users_count(&self) -> usize {
        self.hub.active_users_count()
    }

    /// The online users, oldest connection first.
    pub fn active_users(&self) -> Vec<UserObject> {
        self.hub
            .online_users()
            .into_iter()
            .map(|u| u.user)
            .collect()
    }

    /// The statistics object (`users-stats`, `docs/protocol.md` section 6).
    pub async fn stats(&self) -> UsersStats {
        users_stats(&self.hub, &self.store).await
    }

    /// Disconnects every connection of `user_id` (reason `kicked`). Returns how many.
    pub fn disconnect_user(&self, user_id: &str) -> usize {
        self.hub.close_user(user_id, CloseReason::Kicked)
    }

    /// Makes `user_id` a member of `room`, as `PUT /websocket/rooms/{room}/members/{userId}`
    /// does: the user may be offline or may never have connected; the membership holds
    /// whatever the room's join rule and the user's token say (a `"join": "members"` room is
    /// made of such members), survives restarts, and ends only by the user's `leave-room` or
    /// [`GatewayHandle::remove_room_member`]. When it is new, the user's connections (on every
    /// node of a cluster) hear `joined-room` and the room `user-joined-room`. Returns whether
    /// it is new (`false`: it was a member already, and its membership is the application's
    /// now).
    pub fn add_room_member(&self, room: &str, user_id: &str) -> Result<bool, MembershipError> {
        let (room, user) = parse_member(room, user_id)?;
        Ok(self.hub.add_member(&room, user.as_str())?)
    }

    /// Ends `user_id`'s membership of `room`, whoever made it: its connections (on every node)
    /// hear `left-room` with `reason: "removed"` and nothing of the room after it, and the
    /// room hears `user-left-room`. Returns whether it was a member.
    pub fn remove_room_member(&self, room: &str, user_id: &str) -> Result<bool, MembershipError> {
        let (room, user) = parse_member(room, user_id)?;
        Ok(self.hub.remove_member(&room, user.as_str())?)
    }

    /// The members of `room`, online or not (in a cluster: online on any node), by user id.
    pub fn room_members(&self, room: &str) -> Result<Vec<MemberInfo>, MembershipError> {
        let room = RoomName::parse(room).map_err(|e| MembershipError::Invalid(e.to_string()))?;
        Ok(self.hub.room_members(&room))
    }

    /// The rooms `user_id` is a member of, by name.
    pub fn user_rooms(&self, user_id: &str) -> Vec<String> {
        self.hub.user_rooms(user_id)
    }
}

/// A room and a user named by the application, or which of them breaks its rule.
fn parse_member(room: &str, user_id: &str) -> Result<(RoomName, UserId), MembershipError> {
    let invalid =
        |e: crate::protocol::error::ProtocolError| MembershipError::Invalid(e.to_string());
    Ok((
        RoomName::parse(room).map_err(invalid)?,
        UserId::parse(user_id).map_err(invalid)?,
    ))
}

//! Notifications from back ends: the REST API's three POST endpoints and the embedded API
//! call this, never a transport. A notification is a stored message like any other: it gets
//! an id, is queued for an offline user (a back end knows its users, so a user never seen is
//! queued too), and counts as sent only once committed.
//!
//! - to a user: `notification { id, from, message, type, timestamp }`
//! - to everyone: `broadcast-notification { id, from, message, type, timestamp }`
//! - to a role: `role-notification { id, from, message, type, targetRole, timestamp }`

use super::CommandError;
use crate::hub::{Hub, Publish, Published, Target};
use crate::protocol::payloads::{ClientMsgId, MessageText, NotificationType};
use crate::protocol::wire::{self, Notification, UserObject};

/// A notification to send.
pub struct Notify<'a> {
    /// Where: `Target::User`, `Target::All` or `Target::Role`.
    pub target: Target,
    /// The caller of the REST API, named as the sender.
    pub from: &'a UserObject,
    pub message: &'a MessageText,
    pub kind: &'a NotificationType,
    /// The `Idempotency-Key`: a retry returns the original instead of sending twice.
    pub idempotency_key: Option<&'a ClientMsgId>,
    /// `MAX_QUEUED_PER_USER`: back ends fill offline queues too.
    pub queue_limit: u64,
}

/// Publishes a notification and waits until it is durable.
pub async fn notify(hub: &Hub, n: Notify<'_>) -> Result<Published, CommandError> {
    let timestamp = wire::now();
    let (event, target_role) = match &n.target {
        Target::User(_) => ("notification", None),
        Target::Role(role) => ("role-notification", Some(role.clone())),
        Target::All | Target::Room(_) => ("broadcast-notification", None),
    };
    let payload = |id| Notification {
        id,
        from: n.from,
        message: n.message.as_str(),
        kind: n.kind.as_str(),
        target_role: target_role.as_deref(),
        timestamp: &timestamp,
    };
    let publish = Publish::notification(n.from.user_id.as_str().into(), n.queue_limit)
        .message(event, n.target, n.message.as_str(), &timestamp, &payload)
        .kind(Some(n.kind.as_str()))
        .idempotency_key(n.idempotency_key.map(ClientMsgId::as_str));
    Ok(hub.publish(publish).await?)
}

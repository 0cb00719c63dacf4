//! An event ready to go out: a name and its payload, serialized to JSON once. A transport that
//! frames events itself encodes its frame from it at most once ([`Event::encoded_once`], cached
//! here without the hub knowing the format), and every recipient shares those bytes: a
//! broadcast to a thousand connections serializes and encodes once.

use std::any::Any;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::value::RawValue;

/// A server event shared by every recipient.
#[derive(Debug)]
pub struct Event {
    name: Cow<'static, str>,
    data: Box<RawValue>,
    /// One transport's encoding of the whole event, made by the first recipient that needs it.
    encoded: OnceLock<Box<dyn Any + Send + Sync>>,
    /// For a stored message addressed to one user: its id, so that the writer that hands the
    /// frame to that user's socket records the delivery.
    delivery: Option<u64>,
}

impl Event {
    /// Serializes `data` once and wraps it for sharing.
    pub fn new(name: impl Into<Cow<'static, str>>, data: &impl Serialize) -> Arc<Self> {
        // Our payload types are plain structs of strings and numbers: serializing them cannot
        // fail, and `null` is a harmless stand-in should that ever change.
        let data = serde_json::value::to_raw_value(data).unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not serialize a payload");
            RawValue::from_string("null".into()).expect("null is valid JSON")
        });
        Arc::new(Self {
            name: name.into(),
            data,
            encoded: OnceLock::new(),
            delivery: None,
        })
    }

    /// Like [`Event::new`], for stored message `id` whose delivery to its one recipient is
    /// recorded when a connection takes it.
    pub fn tracked(
        name: impl Into<Cow<'static, str>>,
        data: &impl Serialize,
        id: u64,
    ) -> Arc<Self> {
        let mut event = Self::new(name, data);
        if let Some(e) = Arc::get_mut(&mut event) {
            e.delivery = Some(id);
        }
        event
    }

    /// A stored message replayed as it was first sent (payload JSON from the log).
    pub fn stored(
        name: String,
        payload: String,
        delivery: Option<u64>,
    ) -> Result<Arc<Self>, serde_json::Error> {
        Ok(Arc::new(Self {
            name: name.into(),
            data: RawValue::from_string(payload)?,
            encoded: OnceLock::new(),
            delivery,
        }))
    }

    /// The message id whose delivery this frame completes, if tracked.
    pub fn delivery(&self) -> Option<u64> {
        self.delivery
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The payload as JSON text.
    pub fn data_json(&self) -> &str {
        self.data.get()
    }

    /// The payload as raw JSON, for transports that embed it in their own framing.
    pub fn data_raw(&self) -> &RawValue {
        &self.data
    }

    /// The event encoded by `encode(name, data_json)`, computed on first use and shared by
    /// every later recipient. One encoding is cached per event: should a second frame type
    /// ever ask, it is encoded afresh each time (correct, only slower).
    pub fn encoded_once<T>(&self, encode: impl FnOnce(&str, &str) -> T) -> T
    where
        T: Any + Clone + Send + Sync,
    {
        if let Some(cached) = self.encoded.get() {
            if let Some(frame) = cached.downcast_ref::<T>() {
                return frame.clone();
            }
            return encode(&self.name, self.data.get());
        }
        let frame = encode(&self.name, self.data.get());
        // Two recipients encoding at once both get a correct frame; one of them is kept.
        let _ = self.encoded.set(Box::new(frame.clone()));
        frame
    }
}

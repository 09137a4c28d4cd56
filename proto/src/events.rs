//! Events: what the server publishes once a change commits, on `GET /events` and on RabbitMQ.
//!
//! The envelope is CloudEvents 1.0 in its JSON format, plus `seq`, the feed's cursor. It is
//! defined once here; the server writes it and consumers (the example in `examples/`, the
//! tests) read it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Digest, Visibility};

/// The CloudEvents version of every event.
pub const SPEC_VERSION: &str = "1.0";
/// The `datacontenttype` of every event.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// The AMQP `content_type` of a published event (a structured-mode CloudEvent).
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";
/// What every `type` starts with.
pub const TYPE_PREFIX: &str = "org.tooltool.";

/// Declares the event types once: each with its name after [`TYPE_PREFIX`].
macro_rules! event_types {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal; )*) => {
        /// The `type` of an event.
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl EventType {
            /// Every type, in the order declared.
            pub const ALL: &[EventType] = &[$( EventType::$variant ),*];

            /// The full type, e.g. `org.tooltool.file.verified`.
            pub fn as_str(self) -> &'static str {
                match self { $( EventType::$variant => $name, )* }
            }
        }
    };
}

event_types! {
    /// An upload batch was recorded.
    BatchUploaded = "org.tooltool.batch.uploaded";
    /// A blob was verified in a region: the file became downloadable there.
    FileVerified = "org.tooltool.file.verified";
    /// Staged bytes did not match their declaration and were discarded.
    FileRejected = "org.tooltool.file.rejected";
    /// A file's visibility changed.
    FileVisibilityChanged = "org.tooltool.file.visibility_changed";
    /// Every instance of a file was deleted.
    FileInstancesDeleted = "org.tooltool.file.instances_deleted";
    /// A verified copy was replicated to another region (emitted once regions replicate).
    FileReplicated = "org.tooltool.file.replicated";
    /// A recorded copy was found missing or corrupt in a region and is no longer served from it.
    FileCopyLost = "org.tooltool.file.copy_lost";
    /// A client was registered.
    ClientCreated = "org.tooltool.client.created";
    /// A client's credentials were rotated.
    ClientRotated = "org.tooltool.client.rotated";
    /// A client was revoked.
    ClientRevoked = "org.tooltool.client.revoked";
}

impl EventType {
    /// The type without [`TYPE_PREFIX`], e.g. `file.verified`: the start of the routing key.
    pub fn name(self) -> &'static str {
        &self.as_str()[TYPE_PREFIX.len()..]
    }

    /// Whether the event is about a file (its subject is `sha512/<digest>`).
    pub fn is_file_event(self) -> bool {
        self.name().starts_with("file.")
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s).ok_or_else(|| format!("unknown event type {s:?}"))
    }
}

/// One event: a CloudEvents 1.0 JSON envelope plus `seq`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Always `1.0`.
    pub specversion: String,
    /// A UUID, unique per event: consumers de-duplicate by it (delivery is at least once).
    pub id: String,
    /// The service URL of the server that recorded the event.
    pub source: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// `sha512/<digest>` for file events, `batch/<id>` for batches, `client/<id>` for clients.
    pub subject: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The details.
    pub data: EventData,
    /// The position in the feed: only grows. Pass the last one seen as `after=`.
    pub seq: i64,
}

/// The `data` of an event: the members that apply to its type, the others absent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// Who made the change (a client id, `anonymous`, `admin-cli:<user>`).
    pub actor: String,
    /// The file's digest (file events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The file's size in bytes (file events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The file's visibility (file events: after the change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// The visibility before the change (`file.visibility_changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_visibility: Option<Visibility>,
    /// The visibility after the change (`file.visibility_changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_visibility: Option<Visibility>,
    /// The region (`file.verified`, `file.rejected`, `file.replicated`, `file.copy_lost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The regions whose instances were deleted (`file.instances_deleted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    /// Why the bytes were rejected (`file.rejected`), or the copy lost (`file.copy_lost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The batch (`batch.uploaded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<i64>,
    /// The uploader's message (`batch.uploaded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The files of the batch, by name (`batch.uploaded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<EventFile>>,
    /// The client (`client.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client's scopes (`client.created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The client's credential generation (`client.created`, `client.rotated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// One file of a `batch.uploaded` event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFile {
    /// The name in the batch.
    pub filename: String,
    /// The digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Visibility.
    pub visibility: Visibility,
}

/// Answer of `GET /events`: the events after `after` the caller may see, oldest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// The events.
    pub events: Vec<Event>,
    /// Pass as `after=` next time: the `seq` of the last event, or `after` when there is none.
    pub next: i64,
}

/// Who may see an event; for file events, also the last part of its routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// About public files: whoever may download public files.
    Public,
    /// About internal files (or a batch naming one): `download/internal`.
    Internal,
    /// About clients: `manage`.
    Manage,
}

impl Audience {
    /// The audience of a file event about a file of this visibility.
    pub fn of(v: Visibility) -> Self {
        match v {
            Visibility::Public => Audience::Public,
            Visibility::Internal => Audience::Internal,
        }
    }

    /// `public`, `internal` or `manage`.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Public => "public",
            Audience::Internal => "internal",
            Audience::Manage => "manage",
        }
    }
}

impl FromStr for Audience {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Audience::Public, Audience::Internal, Audience::Manage]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown audience {s:?}"))
    }
}

/// The AMQP routing key of an event: its type without [`TYPE_PREFIX`], plus `.public` or
/// `.internal` for file and batch events (`file.verified.internal`); client events have none
/// (`client.created`).
pub fn routing_key(kind: EventType, audience: Audience) -> String {
    match audience {
        Audience::Manage => kind.name().to_owned(),
        a => format!("{}.{}", kind.name(), a.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_have_the_prefix_and_round_trip() {
        for t in EventType::ALL {
            assert!(t.as_str().starts_with(TYPE_PREFIX), "{t}");
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), *t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(EventType::FileVerified.name(), "file.verified");
        assert!(EventType::FileRejected.is_file_event());
        assert!(!EventType::BatchUploaded.is_file_event());
    }

    #[test]
    fn routing_keys_end_with_the_visibility_for_files_only() {
        assert_eq!(routing_key(EventType::FileVerified, Audience::Internal), "file.verified.internal");
        assert_eq!(routing_key(EventType::BatchUploaded, Audience::Public), "batch.uploaded.public");
        assert_eq!(routing_key(EventType::ClientCreated, Audience::Manage), "client.created");
    }

    #[test]
    fn absent_data_members_are_not_written() {
        let d = EventData { actor: "a".into(), batch_id: Some(3), ..Default::default() };
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"actor":"a","batch_id":3}"#);
    }
}

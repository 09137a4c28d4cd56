//! Domain rows of the metadata store turned into the wire types of PROTOCOL.md: the one place
//! where the two meet, so neither the database layer nor `proto` knows of the other.

use tooltool_proto::{Algorithm, AuditEntry, Batch, BatchFile, Event, FileBatch, FileInfo};

use crate::db::{AuditRow, BatchRow, EventRow, FileBatchRow, StoredFile};
use crate::time::rfc3339;

impl From<&StoredFile> for FileInfo {
    fn from(f: &StoredFile) -> Self {
        FileInfo {
            size: f.size,
            digest: f.digest.clone(),
            algorithm: Algorithm::Sha512,
            visibility: f.visibility,
            has_instances: !f.instances.is_empty(),
            instances: f.instances.clone(),
            proven: Default::default(),
            lost: Default::default(),
        }
    }
}

impl From<&BatchRow> for Batch {
    /// The batch without upload URLs.
    fn from(b: &BatchRow) -> Self {
        let files = b
            .files
            .iter()
            .map(|(name, f)| {
                let file = BatchFile {
                    size: f.size,
                    digest: f.digest.clone(),
                    algorithm: Algorithm::Sha512,
                    visibility: f.visibility,
                    put_url: None,
                    parts: None,
                };
                (name.clone(), file)
            })
            .collect();
        Batch { id: b.id, author: b.author.clone(), message: b.message.clone(), uploaded: rfc3339(b.uploaded), files }
    }
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.id,
            at: rfc3339(r.at),
            actor: r.actor,
            action: r.action,
            target: r.target,
            details: r.details,
        }
    }
}

impl From<FileBatchRow> for FileBatch {
    fn from(r: FileBatchRow) -> Self {
        FileBatch {
            id: r.id,
            author: r.author,
            message: r.message,
            uploaded: rfc3339(r.uploaded),
            filename: r.filename,
        }
    }
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Event {
            specversion: tooltool_proto::events::SPEC_VERSION.to_owned(),
            id: r.id,
            source: r.source,
            kind: r.event.kind,
            time: rfc3339(r.time),
            subject: r.event.subject,
            datacontenttype: tooltool_proto::events::DATA_CONTENT_TYPE.to_owned(),
            data: r.event.data,
            seq: r.seq,
        }
    }
}

//! Moving a stored copy found corrupt aside, under `quarantine/`, for the operator: a
//! server-side copy pinned to the ETag of the object as it is now (multipart above 5 GiB, as
//! every copy here), then the removal of `sha512/<digest>`, so that nothing downloads it and
//! the replicator or a new upload can put the verified bytes back under their key.

use super::{S3Store, sdk_err, status_of};
use crate::blobs::StoreError;
use tooltool_proto::Digest;

impl S3Store {
    /// See [`crate::blobs::BlobStore::quarantine`].
    pub(super) async fn move_aside(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        let key = format!("sha512/{digest}");
        let head = match self.client.head_object().bucket(&self.bucket).key(&key).send().await {
            Ok(head) => head,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(sdk_err("head a copy to set aside", e)),
        };
        let etag = head.e_tag().map(str::to_owned).ok_or_else(|| StoreError::msg("set a copy aside", "no ETag"))?;
        let size = head.content_length().unwrap_or(0).max(0) as u64;
        let dest = crate::blobs::quarantine_key(digest);
        if !self.copy_if_match(&self.bucket, &key, &dest, &etag, size).await? {
            return Err(StoreError::msg("set a copy aside", "the object changed meanwhile; the next scrub sees it"));
        }
        self.delete_key(&key).await?;
        Ok(Some(dest))
    }
}

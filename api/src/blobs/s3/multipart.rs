//! Uploads in parts on S3: a multipart upload on the short `staging/<key>` (s3s-fs cannot hold
//! one under `sha512/<128 hex>`), presigned UploadPart URLs, and a completion from the
//! server's own ListParts, sorted (s3s-fs lists parts in no particular order) and with the
//! ETags storage reported, never the client's. The completed object is then verified and
//! published like any staged upload.

use std::time::Duration;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{S3Store, sdk_err, status_of};
use crate::blobs::{ReceivedPart, StoreError};

/// S3 answers at most this many parts per ListParts page.
const LIST_PAGE: i32 = 1000;

impl S3Store {
    pub(super) async fn start_multipart(&self, staging_key: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(format!("staging/{staging_key}"))
            .send()
            .await
            .map_err(|e| sdk_err("start a multipart upload", e))?;
        out.upload_id().map(str::to_owned).ok_or_else(|| StoreError::msg("start a multipart upload", "no upload id"))
    }

    pub(super) async fn presign_part(
        &self,
        staging_key: &str,
        upload_id: &str,
        number: u32,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        let mut extra = format!("partNumber={number}&uploadId=");
        super::presign::uri_encode(upload_id, &mut extra);
        self.presigner.presign_query("PUT", &format!("staging/{staging_key}"), &extra, ttl).await
    }

    pub(super) async fn list_multipart(
        &self,
        staging_key: &str,
        upload_id: &str,
    ) -> Result<Option<Vec<ReceivedPart>>, StoreError> {
        let key = format!("staging/{staging_key}");
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let res = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(upload_id)
                .max_parts(LIST_PAGE)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let page = match res {
                Ok(page) => page,
                Err(e) if status_of(&e) == Some(404) => return Ok(None),
                Err(e) => return Err(sdk_err("list the parts of an upload", e)),
            };
            for p in page.parts() {
                let (Some(number), Some(size)) = (p.part_number(), p.size()) else { continue };
                parts.push(ReceivedPart {
                    number: number.max(0) as u32,
                    size: size.max(0) as u64,
                    etag: p.e_tag().unwrap_or_default().to_owned(),
                });
            }
            match page.next_part_number_marker() {
                Some(next) if page.is_truncated() == Some(true) && marker.as_deref() != Some(next) => {
                    marker = Some(next.to_owned());
                }
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(Some(parts))
    }

    pub(super) async fn complete_multipart(
        &self,
        staging_key: &str,
        upload_id: &str,
        parts: &[ReceivedPart],
    ) -> Result<bool, StoreError> {
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| CompletedPart::builder().part_number(p.number as i32).e_tag(&p.etag).build())
            .collect();
        let res = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(format!("staging/{staging_key}"))
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(sdk_err("complete a multipart upload", e)),
        }
    }

    pub(super) async fn abort_multipart(&self, staging_key: &str, upload_id: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(format!("staging/{staging_key}"))
            .upload_id(upload_id)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(sdk_err("abort a multipart upload", e)),
        }
    }
}

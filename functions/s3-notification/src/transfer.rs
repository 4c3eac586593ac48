//! The mirror's S3 transport. Source buckets on AWS are copied server-side with the function's
//! role (`CopyObject`, or `UploadPartCopy` beyond the 5 GiB single-copy limit). Buckets elsewhere
//! (VK Cloud, any S3 API) are read through their own endpoint and streamed into the mirror one
//! part at a time, so memory stays at one part whatever the object's size.

use crate::mirror::{Copied, MirrorError, ObjectTransfer};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where source objects are read from.
#[derive(Clone, Debug)]
pub enum SourceAccess {
    /// The mirror's own client (the function's role): server-side copies.
    SameAccount,
    /// Another S3 endpoint with its own credentials: streamed through the function.
    Foreign(Client),
}

#[derive(Debug)]
pub struct S3Transfer {
    mirror: Client,
    mirror_bucket: String,
    source: SourceAccess,
    part_size: u64,
    copy_object_limit: u64,
    /// The most bytes held in memory at once by a streamed copy: one part, plus the rest of the
    /// network chunk that crossed the part boundary.
    peak_buffered: AtomicU64,
}

impl S3Transfer {
    /// S3's limit for one `CopyObject`.
    pub const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;
    /// S3's smallest part (except the last).
    pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

    pub fn new(mirror: Client, mirror_bucket: impl Into<String>, source: SourceAccess) -> Self {
        S3Transfer {
            mirror,
            mirror_bucket: mirror_bucket.into(),
            source,
            part_size: 8 * 1024 * 1024,
            copy_object_limit: Self::COPY_OBJECT_LIMIT,
            peak_buffered: AtomicU64::new(0),
        }
    }

    /// Part size of multipart copies and uploads (at least 5 MiB).
    pub fn with_part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes.max(Self::MIN_PART_SIZE);
        self
    }

    /// Objects above this size are copied in parts (tests lower it to exercise that path).
    pub fn with_copy_object_limit(mut self, bytes: u64) -> Self {
        self.copy_object_limit = bytes;
        self
    }

    pub fn mirror_bucket(&self) -> &str {
        &self.mirror_bucket
    }

    pub fn peak_buffered_bytes(&self) -> u64 {
        self.peak_buffered.load(Ordering::Relaxed)
    }

    async fn server_side_copy(
        &self,
        bucket: &str,
        key: &str,
        target: &str,
    ) -> Result<Copied, MirrorError> {
        let head = match self
            .mirror
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => head,
            Err(err) if is_not_found(&err) => return Ok(Copied::SourceMissing),
            Err(err) => return Err(transfer_error("head source object", err)),
        };
        let size = head.content_length().unwrap_or(0).max(0) as u64;
        let source = copy_source(bucket, key, head.version_id());
        if size <= self.copy_object_limit {
            return match self
                .mirror
                .copy_object()
                .bucket(&self.mirror_bucket)
                .key(target)
                .copy_source(&source)
                .send()
                .await
            {
                Ok(_) => Ok(Copied::Object {
                    bytes: size,
                    parts: 1,
                }),
                Err(err) if is_not_found(&err) => Ok(Copied::SourceMissing),
                Err(err) => Err(transfer_error("copy object", err)),
            };
        }
        let mut upload = self.start_upload(target, head.content_type()).await?;
        let mut offset = 0;
        while offset < size {
            let last = (offset + self.part_size).min(size) - 1;
            let result = self
                .mirror
                .upload_part_copy()
                .bucket(&self.mirror_bucket)
                .key(target)
                .upload_id(&upload.id)
                .part_number(upload.next_part_number())
                .copy_source(&source)
                .copy_source_range(format!("bytes={offset}-{last}"))
                .send()
                .await;
            let etag = match result {
                Ok(output) => output
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_owned),
                Err(err) => {
                    let missing = is_not_found(&err);
                    self.abort(&upload).await;
                    return if missing {
                        Ok(Copied::SourceMissing)
                    } else {
                        Err(transfer_error("copy part", err))
                    };
                }
            };
            upload
                .parts
                .push(completed_part(upload.next_part_number(), etag));
            offset = last + 1;
        }
        self.complete(upload, size).await
    }

    async fn streamed_copy(
        &self,
        source: &Client,
        bucket: &str,
        key: &str,
        target: &str,
    ) -> Result<Copied, MirrorError> {
        let object = match source.get_object().bucket(bucket).key(key).send().await {
            Ok(object) => object,
            Err(err) if is_not_found(&err) => return Ok(Copied::SourceMissing),
            Err(err) => return Err(transfer_error("get source object", err)),
        };
        let size = object.content_length().unwrap_or(0).max(0) as u64;
        let content_type = object.content_type().map(str::to_owned);
        let mut reader = PartReader {
            body: object.body,
            carry: Bytes::new(),
        };
        if size <= self.part_size {
            let bytes = self.read_part(&mut reader).await?;
            self.mirror
                .put_object()
                .bucket(&self.mirror_bucket)
                .key(target)
                .set_content_type(content_type)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| transfer_error("put object", e))?;
            return Ok(Copied::Object {
                bytes: size,
                parts: 1,
            });
        }
        let mut upload = self.start_upload(target, content_type.as_deref()).await?;
        let mut copied = 0;
        loop {
            let part = match self.read_part(&mut reader).await {
                Ok(part) => part,
                Err(err) => {
                    self.abort(&upload).await;
                    return Err(err);
                }
            };
            if part.is_empty() {
                break;
            }
            copied += part.len() as u64;
            let number = upload.next_part_number();
            let result = self
                .mirror
                .upload_part()
                .bucket(&self.mirror_bucket)
                .key(&upload.key)
                .upload_id(&upload.id)
                .part_number(number)
                .body(ByteStream::from(part))
                .send()
                .await;
            match result {
                Ok(output) => upload
                    .parts
                    .push(completed_part(number, output.e_tag().map(str::to_owned))),
                Err(err) => {
                    self.abort(&upload).await;
                    return Err(transfer_error("upload part", err));
                }
            }
        }
        if copied != size {
            self.abort(&upload).await;
            return Err(MirrorError::Transfer(format!(
                "source object ended after {copied} of {size} bytes"
            )));
        }
        self.complete(upload, size).await
    }

    /// Reads up to one part (less only at the end of the stream). A chunk that overruns the
    /// part is split without copying, and its rest starts the next part, so the buffer never
    /// grows past one part.
    async fn read_part(&self, reader: &mut PartReader) -> Result<Bytes, MirrorError> {
        let target = self.part_size as usize;
        let mut buffer = BytesMut::with_capacity(target);
        loop {
            let mut chunk = if reader.carry.is_empty() {
                match reader.body.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(err)) => {
                        return Err(MirrorError::Transfer(format!(
                            "reading source object: {}",
                            DisplayErrorContext(&err)
                        )))
                    }
                    None => break,
                }
            } else {
                std::mem::take(&mut reader.carry)
            };
            let room = target - buffer.len();
            if chunk.len() > room {
                reader.carry = chunk.split_off(room);
            }
            buffer.extend_from_slice(&chunk);
            if buffer.len() == target {
                break;
            }
        }
        self.peak_buffered.fetch_max(
            (buffer.capacity() + reader.carry.len()) as u64,
            Ordering::Relaxed,
        );
        Ok(buffer.freeze())
    }

    async fn start_upload(
        &self,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<Upload, MirrorError> {
        let output = self
            .mirror
            .create_multipart_upload()
            .bucket(&self.mirror_bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_owned))
            .send()
            .await
            .map_err(|e| transfer_error("start multipart upload", e))?;
        let id = output
            .upload_id()
            .ok_or_else(|| MirrorError::Transfer("multipart upload without an id".into()))?
            .to_owned();
        Ok(Upload {
            key: key.to_owned(),
            id,
            parts: Vec::new(),
        })
    }

    async fn complete(&self, upload: Upload, size: u64) -> Result<Copied, MirrorError> {
        let parts = upload.parts.len() as u32;
        let result = self
            .mirror
            .complete_multipart_upload()
            .bucket(&self.mirror_bucket)
            .key(&upload.key)
            .upload_id(&upload.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(upload.parts.clone()))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Copied::Object { bytes: size, parts }),
            Err(err) => {
                self.abort(&upload).await;
                Err(transfer_error("complete multipart upload", err))
            }
        }
    }

    /// Best effort: an upload left behind is removed by the bucket's lifecycle rule.
    async fn abort(&self, upload: &Upload) {
        let result = self
            .mirror
            .abort_multipart_upload()
            .bucket(&self.mirror_bucket)
            .key(&upload.key)
            .upload_id(&upload.id)
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %DisplayErrorContext(&err), "aborting multipart upload failed");
        }
    }
}

impl ObjectTransfer for S3Transfer {
    async fn copy(&self, bucket: &str, key: &str, target: &str) -> Result<Copied, MirrorError> {
        match &self.source {
            SourceAccess::SameAccount => self.server_side_copy(bucket, key, target).await,
            SourceAccess::Foreign(source) => self.streamed_copy(source, bucket, key, target).await,
        }
    }

    async fn delete(&self, target: &str) -> Result<(), MirrorError> {
        self.mirror
            .delete_object()
            .bucket(&self.mirror_bucket)
            .key(target)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| transfer_error("delete object", e))
    }

    async fn source_exists(&self, bucket: &str, key: &str) -> Result<bool, MirrorError> {
        let client = match &self.source {
            SourceAccess::SameAccount => &self.mirror,
            SourceAccess::Foreign(source) => source,
        };
        match client.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(transfer_error("head source object", err)),
        }
    }
}

struct PartReader {
    body: ByteStream,
    carry: Bytes,
}

struct Upload {
    key: String,
    id: String,
    parts: Vec<CompletedPart>,
}

impl Upload {
    fn next_part_number(&self) -> i32 {
        self.parts.len() as i32 + 1
    }
}

fn completed_part(number: i32, etag: Option<String>) -> CompletedPart {
    CompletedPart::builder()
        .part_number(number)
        .set_e_tag(etag)
        .build()
}

/// `bucket/key[?versionId=...]`, the key percent-encoded (slashes kept), as `x-amz-copy-source`
/// requires. Pinning the version copies exactly the object that was inspected.
pub fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut source = format!("{bucket}/");
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            source.push(byte as char);
        } else {
            source.push_str(&format!("%{byte:02X}"));
        }
    }
    if let Some(version) = version.filter(|v| !v.is_empty() && *v != "null") {
        source.push_str("?versionId=");
        source.push_str(version);
    }
    source
}

/// The object (not the bucket) is missing. HEAD answers have no body, hence no code: a bare 404
/// tells. `NoSuchBucket` is not "the object is gone": on a copy it is most likely the mirror
/// bucket, a permanent failure.
fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code) => matches!(code, "NoSuchKey" | "NotFound"),
            None => service.raw().status().as_u16() == 404,
        },
        _ => false,
    }
}

/// S3 error codes that no retry changes: credentials or policy refusing, archived objects
/// (Glacier, Deep Archive) that must be restored first, a bucket that does not exist, a mirror
/// key (`bucket/key`) beyond S3's 1024 bytes, a request the service does not support.
const PERMANENT_CODES: &[&str] = &[
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidObjectState",
    "ObjectNotInActiveTierError",
    "NoSuchBucket",
    "InvalidBucketName",
    "KeyTooLongError",
    "EntityTooLarge",
    "InvalidStorageClass",
    "InvalidRequest",
    "InvalidArgument",
    "MethodNotAllowed",
    "NotImplemented",
    "PermanentRedirect",
];

/// Client-side (4xx) codes that a retry can clear: throttling, timeouts, expired session
/// credentials (the role's are renewed), clock skew, a concurrent conflicting operation, a body
/// cut or damaged on the way.
const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "ExpiredToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "OperationAborted",
    "NoSuchUpload",
    "IncompleteBody",
    "BadDigest",
    "XAmzContentSHA256Mismatch",
    "InvalidPart",
];

/// Whether S3's answer is final: listed codes decide, then the status (any other 4xx or
/// redirect is final; 5xx, 429 and anything unknown are worth a retry).
pub fn is_permanent(code: Option<&str>, status: u16) -> bool {
    if let Some(code) = code {
        if PERMANENT_CODES.contains(&code) {
            return true;
        }
        if TRANSIENT_CODES.contains(&code) {
            return false;
        }
    }
    matches!(status, 300..=399 | 400..=428 | 430..=499) && status != 408 && status != 409
}

/// A failed S3 call as the mirror reports it. Service errors are described by code and status
/// only: S3's messages can quote the object's key, which the logs never carry.
fn transfer_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> MirrorError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code();
            let status = service.raw().status().as_u16();
            let detail = format!(
                "{operation}: {} (HTTP {status})",
                code.unwrap_or("no error code")
            );
            if is_permanent(code, status) {
                MirrorError::Refused(detail)
            } else {
                MirrorError::Transfer(detail)
            }
        }
        // The request could not even be built: the same request never will be.
        SdkError::ConstructionFailure(_) => {
            MirrorError::Refused(format!("{operation}: {}", DisplayErrorContext(&err)))
        }
        // Timeouts, connection failures, unreadable answers.
        _ => MirrorError::Transfer(format!("{operation}: {}", DisplayErrorContext(&err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_encode_keys_but_keep_slashes() {
        assert_eq!(
            copy_source("b", "dir/a b+c.txt", None),
            "b/dir/a%20b%2Bc.txt"
        );
        assert_eq!(
            copy_source("b", "ü?&=#", Some("v1")),
            "b/%C3%BC%3F%26%3D%23?versionId=v1"
        );
        assert_eq!(copy_source("b", "k", Some("null")), "b/k");
    }

    #[test]
    fn final_refusals_and_passing_failures_are_told_apart() {
        for (code, status) in [
            (Some("AccessDenied"), 403),
            (None, 403),
            (Some("InvalidObjectState"), 403),
            (Some("ObjectNotInActiveTierError"), 403),
            (Some("NoSuchBucket"), 404),
            (Some("KeyTooLongError"), 400),
            (Some("PermanentRedirect"), 301),
            (Some("NotImplemented"), 501),
            (Some("SomethingNew"), 400),
        ] {
            assert!(is_permanent(code, status), "{code:?} {status}");
        }
        for (code, status) in [
            (Some("SlowDown"), 503),
            (Some("InternalError"), 500),
            (None, 500),
            (None, 503),
            (None, 429),
            (Some("RequestTimeout"), 400),
            (Some("ExpiredToken"), 400),
            (Some("OperationAborted"), 409),
            (None, 408),
            (Some("SomethingNew"), 502),
        ] {
            assert!(!is_permanent(code, status), "{code:?} {status}");
        }
    }
}

//! The media rules: who may upload what, how an upload is verified, and who
//! may download it. Transport-free; the gRPC layer only converts.

use std::sync::Arc;

use chatmesh_ids::{ChannelId, UserId};
use chrono::Utc;

use crate::catalog::{Catalog, Membership};
use crate::store::{Blobs, ObjectKey, SignedUrl};
use crate::{Media, MediaError, MediaId, MediaLimits, MediaState, policy};

/// What a client asks to upload.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Target channel.
    pub channel: ChannelId,
    /// The uploader.
    pub user: UserId,
    /// The client's file name; sanitised, kept as metadata only.
    pub filename: String,
    /// Declared content type.
    pub content_type: String,
    /// Declared size in bytes.
    pub size: u64,
}

/// A created upload: the pending media and where to PUT its bytes.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The pending media.
    pub media: Media,
    /// The presigned PUT.
    pub url: SignedUrl,
}

/// The media service's operations.
#[derive(Debug, Clone)]
pub struct Uploads {
    catalog: Arc<dyn Catalog>,
    blobs: Arc<dyn Blobs>,
    limits: MediaLimits,
}

impl Uploads {
    /// Operations over `catalog` and `blobs` under `limits`.
    pub fn new(catalog: Arc<dyn Catalog>, blobs: Arc<dyn Blobs>, limits: MediaLimits) -> Self {
        Self {
            catalog,
            blobs,
            limits,
        }
    }

    /// Checks the request and membership, records a pending media and signs
    /// a URL to PUT exactly the declared bytes.
    pub async fn create(&self, req: NewUpload) -> Result<Upload, MediaError> {
        policy::check_size(req.size, &self.limits)?;
        let content_type = policy::check_content_type(&req.content_type, &self.limits)?;
        let filename = policy::display_name(&req.filename)?;
        self.check_member(&req.channel, &req.user).await?;

        let id = MediaId::generate();
        let media = Media {
            key: ObjectKey::for_media(&req.channel, &id),
            id,
            channel: req.channel,
            uploader: req.user,
            filename,
            content_type,
            size: req.size,
            state: MediaState::Pending,
            created_at: Utc::now(),
        };
        // Signed first: a store that cannot sign leaves no pending row
        // behind, and a URL without a row completes nothing.
        let url = self
            .blobs
            .presign_put(
                &media.key.staging(),
                &media.content_type,
                media.size,
                self.limits.url_ttl,
            )
            .await?;
        self.catalog.insert(&media).await?;
        metrics::counter!("chatmesh_media_uploads_created_total").increment(1);
        tracing::info!(
            media_id = %media.id,
            channel_id = %media.channel,
            size = media.size,
            content_type = media.content_type,
            "upload created"
        );
        Ok(Upload { media, url })
    }

    /// Moves the uploaded bytes to the media's own key, verifies them there
    /// against the declaration and marks the media ready. Verifying after
    /// the move means no later upload to the same URL can change what was
    /// checked. Bytes of the wrong size or type are deleted, so the uploader
    /// can try again with the same URL while it lasts. A retry after any
    /// failure picks up where the last attempt stopped.
    pub async fn complete(&self, id: &MediaId, user: &UserId) -> Result<Media, MediaError> {
        let media = self.media(id).await?;
        if &media.uploader != user {
            return Err(MediaError::NotUploader);
        }
        if media.state == MediaState::Ready {
            return Ok(media);
        }
        self.blobs.promote(&media.key.staging(), &media.key).await?;
        let Some(stored) = self.blobs.head(&media.key).await? else {
            return Err(MediaError::NotUploaded);
        };
        let mismatch = if stored.size != media.size {
            Some(MediaError::SizeMismatch {
                declared: media.size,
                stored: stored.size,
            })
        } else if stored.content_type.as_deref() != Some(media.content_type.as_str()) {
            Some(MediaError::TypeMismatch {
                declared: media.content_type.clone(),
                stored: stored.content_type,
            })
        } else {
            None
        };
        if let Some(err) = mismatch {
            self.blobs.delete(&media.key).await?;
            metrics::counter!("chatmesh_media_uploads_discarded_total").increment(1);
            tracing::info!(media_id = %media.id, reason = %err, "uploaded object discarded");
            return Err(err);
        }
        let media = self
            .catalog
            .mark_ready(id)
            .await?
            .ok_or(MediaError::MediaNotFound)?;
        metrics::counter!("chatmesh_media_uploads_completed_total").increment(1);
        tracing::info!(media_id = %media.id, channel_id = %media.channel, "upload completed");
        Ok(media)
    }

    /// A presigned GET for a ready media, for members of its channel.
    pub async fn download_url(&self, id: &MediaId, user: &UserId) -> Result<SignedUrl, MediaError> {
        let media = self.get(id, user).await?;
        if media.state != MediaState::Ready {
            return Err(MediaError::NotReady);
        }
        let url = self
            .blobs
            .presign_get(&media.key, self.limits.url_ttl)
            .await?;
        metrics::counter!("chatmesh_media_downloads_signed_total").increment(1);
        Ok(url)
    }

    /// The media's metadata, for members of its channel.
    pub async fn get(&self, id: &MediaId, user: &UserId) -> Result<Media, MediaError> {
        let media = self.media(id).await?;
        self.check_member(&media.channel, user).await?;
        Ok(media)
    }

    async fn media(&self, id: &MediaId) -> Result<Media, MediaError> {
        self.catalog.get(id).await?.ok_or(MediaError::MediaNotFound)
    }

    /// Fails unless `channel` exists and `user` belongs to it.
    async fn check_member(&self, channel: &ChannelId, user: &UserId) -> Result<(), MediaError> {
        match self.catalog.membership(channel, user).await? {
            Membership::NoChannel => Err(MediaError::ChannelNotFound),
            Membership::Outsider => Err(MediaError::NotMember),
            Membership::Member => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

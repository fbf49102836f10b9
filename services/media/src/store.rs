//! Opening the configured object store and probing it.

use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_server::{Probe, ProbeFuture};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

use crate::StoreConfig;

/// Opens the store named by `config`. The local store's root is created if
/// missing.
pub fn open_store(config: &StoreConfig) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(match config {
        StoreConfig::S3 {
            endpoint,
            region,
            bucket,
            access_key,
            secret_key,
        } => Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(endpoint)
                .with_region(region)
                .with_bucket_name(bucket)
                .with_access_key_id(access_key)
                .with_secret_access_key(secret_key)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"))
                .build()
                .context("configuring the S3 store")?,
        ),
        StoreConfig::Local { root } => {
            std::fs::create_dir_all(root)
                .with_context(|| format!("cannot create store.root {}", root.display()))?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(root)
                    .with_context(|| format!("cannot open store.root {}", root.display()))?,
            )
        }
    })
}

/// Checks that the store answers: a HEAD of a key that need not exist.
#[derive(Debug, Clone)]
pub struct StoreProbe {
    store: Arc<dyn ObjectStore>,
}

impl StoreProbe {
    /// A probe of `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }
}

impl Probe for StoreProbe {
    fn name(&self) -> &str {
        "object-store"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            match self.store.head(&Path::from("chatmesh-probe/absent")).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(err) => Err(err.to_string()),
            }
        })
    }
}

//! Whether a service's instances are serving, by their gRPC health.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chatmesh_probe::{Probe, ProbeFuture};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::discover::{Resolve, Source, SystemDns, resolve_all, sources};
use crate::endpoints::InvalidEndpoints;

/// Asks a service's gRPC health endpoint whether it is SERVING; with
/// several instances, whether any is. A `dns://` name is resolved at each
/// check.
#[derive(Clone)]
pub struct GrpcHealthProbe {
    name: String,
    sources: Vec<Source>,
    resolver: Arc<dyn Resolve>,
    // One lazily connected channel per instance seen.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl std::fmt::Debug for GrpcHealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcHealthProbe")
            .field("name", &self.name)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl GrpcHealthProbe {
    /// A probe of the service at `endpoints` (see [`crate::endpoints`]);
    /// connects lazily.
    pub fn new(service: &str, endpoints: &str) -> Result<Self, InvalidEndpoints> {
        let sources = sources(endpoints).map_err(InvalidEndpoints)?;
        for source in &sources {
            if let Source::Url(url) = source {
                crate::balance::endpoint(url)?;
            }
        }
        Ok(Self {
            name: format!("grpc:{service}"),
            sources,
            resolver: Arc::new(SystemDns),
            channels: Arc::default(),
        })
    }

    fn channel(&self, url: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| e.to_string())?
            .connect_timeout(std::time::Duration::from_secs(1))
            .connect_lazy();
        channels.insert(url.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// Whether the instance behind `channel` reports SERVING.
pub(crate) async fn serving(channel: Channel) -> Result<(), String> {
    let mut client = HealthClient::new(channel);
    let status = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner()
        .status;
    if status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err("not serving".into())
    }
}

impl Probe for GrpcHealthProbe {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let urls = resolve_all(&self.sources, &*self.resolver).await?;
            let channels = urls
                .iter()
                .map(|url| self.channel(url))
                .collect::<Result<Vec<_>, _>>()?;
            let results = futures::future::join_all(channels.into_iter().map(serving)).await;
            if results.iter().any(Result::is_ok) {
                return Ok(());
            }
            Err(results
                .into_iter()
                .filter_map(Result::err)
                .next()
                .unwrap_or_else(|| "no instances".into()))
        })
    }
}

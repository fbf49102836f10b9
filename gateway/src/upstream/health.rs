//! Connections to the services the gateway calls.

use chatmesh_server::{Probe, ProbeFuture};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Asks a service's gRPC health endpoint whether it is SERVING; with
/// several instances, whether any is.
#[derive(Debug, Clone)]
pub struct GrpcHealthProbe {
    name: String,
    channels: Vec<Channel>,
}

impl GrpcHealthProbe {
    /// A probe of the service at `endpoints` (see
    /// [`crate::ServiceEndpoints`]); connects lazily.
    pub fn new(service: &str, endpoints: &str) -> anyhow::Result<Self> {
        let channels = crate::config::instances(endpoints)
            .into_iter()
            .map(|url| {
                Ok(Endpoint::from_shared(url.to_owned())?
                    .connect_timeout(std::time::Duration::from_secs(1))
                    .connect_lazy())
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            name: format!("grpc:{service}"),
            channels,
        })
    }
}

async fn serving(channel: Channel) -> Result<(), String> {
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
            let checks = self.channels.iter().cloned().map(serving);
            let results = futures::future::join_all(checks).await;
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

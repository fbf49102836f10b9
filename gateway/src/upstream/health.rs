//! Connections to the services the gateway calls.

use chatmesh_server::{Probe, ProbeFuture};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Asks a service's gRPC health endpoint whether it is SERVING.
#[derive(Debug, Clone)]
pub struct GrpcHealthProbe {
    name: String,
    channel: Channel,
}

impl GrpcHealthProbe {
    /// A probe of the service at `endpoint`; connects lazily.
    pub fn new(service: &str, endpoint: &str) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(endpoint.to_owned())?
            .connect_timeout(std::time::Duration::from_secs(1))
            .connect_lazy();
        Ok(Self {
            name: format!("grpc:{service}"),
            channel,
        })
    }
}

impl Probe for GrpcHealthProbe {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let mut client = HealthClient::new(self.channel.clone());
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
        })
    }
}

//! What the gRPC servers' tower layers (timeout, concurrency limit with
//! load shedding, span and metrics) cost per call. One in-process server
//! answers a trivial call over loopback HTTP/2, first bare, then behind
//! the layers every chatmesh server runs, with the same client and the same
//! calls in flight; the bare server is the baseline. A send crosses one
//! such call, so the ratio bounds the layers' share of the message path.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chatmesh_bench::param;
use chatmesh_proto::presence::v1 as pb;
use chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient;
use chatmesh_proto::presence::v1::presence_service_server::{
    PresenceService, PresenceServiceServer,
};
use chatmesh_server::{GrpcLayer, GrpcLimits};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Answers at once: the call costs only what the transport and layers do.
#[derive(Debug, Clone, Copy)]
struct Trivial;

#[tonic::async_trait]
impl PresenceService for Trivial {
    async fn get_presence(
        &self,
        _request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::GetPresenceResponse>, Status> {
        Ok(Response::new(pb::GetPresenceResponse { users: Vec::new() }))
    }

    async fn list_online(
        &self,
        _request: Request<pb::ListOnlineRequest>,
    ) -> Result<Response<pb::ListOnlineResponse>, Status> {
        Ok(Response::new(pb::ListOnlineResponse {
            user_ids: Vec::new(),
        }))
    }
}

async fn serve(layered: bool, stop: CancellationToken) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = PresenceServiceServer::new(Trivial);
    tokio::spawn(async move {
        let result = if layered {
            tonic::transport::Server::builder()
                .layer(GrpcLayer::new(&GrpcLimits {
                    request_timeout: Duration::from_secs(10),
                    max_concurrent_requests: 1024,
                }))
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        } else {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        };
        if let Err(err) = result {
            eprintln!("bench server failed: {err}");
        }
    });
    Ok(addr)
}

/// Calls per second with `in_flight` calls outstanding, `calls` in all.
async fn rate(addr: std::net::SocketAddr, calls: u64, in_flight: u64) -> anyhow::Result<f64> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let client = PresenceServiceClient::new(channel);
    let call = |mut c: PresenceServiceClient<tonic::transport::Channel>| async move {
        c.get_presence(pb::GetPresenceRequest {
            user_ids: vec!["alice".into()],
        })
        .await
        .map(|_| ())
    };
    // Warm the connection and the allocator.
    for _ in 0..1_000 {
        call(client.clone()).await?;
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let client = client.clone();
        let share = calls / in_flight;
        tasks.spawn(async move {
            for _ in 0..share {
                call(client.clone()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok((calls / in_flight * in_flight) as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let calls = param("BENCH_LAYER_CALLS", 100_000);
    let stop = CancellationToken::new();
    let bare = serve(false, stop.clone()).await?;
    let layered = serve(true, stop.clone()).await?;
    println!("gRPC server layers: {calls} trivial calls over loopback HTTP/2, bare server first");
    for in_flight in [1, 64] {
        // Interleaved rounds, best of three each, so drift on a shared
        // machine hits both sides alike.
        let (mut b, mut l) = (0.0_f64, 0.0_f64);
        for _ in 0..3 {
            b = b.max(rate(bare, calls, in_flight).await?);
            l = l.max(rate(layered, calls, in_flight).await?);
        }
        println!(
            "  {in_flight:>3} in flight: bare {b:>9.0} calls/s, layered {l:>9.0} calls/s, ratio {:.3} ({:+.1}% cost, {:.2} us of server time per call)",
            l / b,
            (b / l - 1.0) * 100.0,
            (1.0 / l - 1.0 / b) * 1e6,
        );
    }
    stop.cancel();
    Ok(())
}

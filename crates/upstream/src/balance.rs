//! Calls spread over every instance of a service.
//!
//! One plain URL gets a plain lazy channel. Several instances (a list, or a
//! `dns://` name, see [`crate::endpoints`]) get tower's power-of-two-choices
//! balancer over one connection per instance, each instance's load measured
//! as the peak-EWMA of its response times times its calls in flight, so a
//! slow instance loses nearly every comparison and gets few calls while it
//! is slow. (tonic's own balanced channel reports every instance's load as
//! zero, which makes its choice random.)
//!
//! A task per instance checks its gRPC health every
//! `upstream.health_interval`, and at once when a call to it fails at the
//! transport; a failed check is repeated after 100 ms. An instance that
//! fails `upstream.health_failures` checks in a row is taken out of the
//! balancer and put back after its next good check, so a dead instance is
//! out within a few hundred milliseconds of its first refused call. The last instance standing is
//! never taken out, so with every instance down a call fails at once with
//! `unavailable` instead of waiting for one to come back. A `dns://` name
//! is reread every `upstream.dns_refresh`; instances that appear are put in
//! at once, instances that disappear are taken out, and a lookup that fails
//! changes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_server::Tasks;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt as _;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover};
use tower::util::BoxCloneSyncService;

use crate::UpstreamSettings;
use crate::discover::{Resolve, Source, SystemDns, resolve_all, sources};
use crate::endpoints::InvalidEndpoints;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error of a call through an [`Upstream`]: the transport's, whose
/// source chain tonic reads to pick the status (a refused connection is
/// `unavailable`). A named type rather than a boxed trait object, which
/// the generated clients' futures could not be proven `Send` with.
#[derive(Debug)]
pub struct UpstreamError(BoxError);

impl UpstreamError {
    fn new(err: impl Into<BoxError>) -> Self {
        Self(err.into())
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A cloneable gRPC transport to every instance of one service, for the
/// generated clients (`ChatServiceClient::new(upstream)`).
pub type Upstream = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, UpstreamError>;

/// Calls waiting for the balancer; a call beyond this waits for room.
const BUFFER: usize = 1024;
/// How soon a failed check is repeated, to confirm the instance is down.
const RECHECK: Duration = Duration::from_millis(100);

/// An endpoint to `url` that connects on first use.
pub(crate) fn endpoint(url: &str) -> Result<Endpoint, InvalidEndpoints> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| InvalidEndpoints(format!("`{url}` is not a valid URL: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true))
}

/// A transport to the service at `endpoints` (see [`crate::endpoints`]);
/// `service` names it in logs and metrics, and discovery and health
/// checks run on `tasks` until their shutdown token is cancelled. Every
/// entry is checked before anything starts, so on error nothing runs.
pub fn channel(
    service: &'static str,
    endpoints: &str,
    settings: &UpstreamSettings,
    tasks: &Tasks,
) -> Result<Upstream, InvalidEndpoints> {
    channel_with(service, endpoints, settings, tasks, Arc::new(SystemDns))
}

/// [`channel`] with names resolved by `resolver`.
pub(crate) fn channel_with(
    service: &'static str,
    endpoints: &str,
    settings: &UpstreamSettings,
    tasks: &Tasks,
    resolver: Arc<dyn Resolve>,
) -> Result<Upstream, InvalidEndpoints> {
    let sources = sources(endpoints).map_err(InvalidEndpoints)?;
    if let [Source::Url(url)] = sources.as_slice() {
        return Ok(single(endpoint(url)?.connect_lazy()));
    }
    // Every URL must parse before anything starts.
    for source in &sources {
        if let Source::Url(url) = source {
            endpoint(url)?;
        }
    }
    let (changes, rx) = mpsc::unbounded_channel();
    let discover = PeakEwmaDiscover::new::<http::Request<Body>>(
        changes_stream(rx),
        settings.default_rtt,
        settings.load_decay,
        CompleteOnResponse::default(),
    );
    let balance: Balance<_, http::Request<Body>> = Balance::new(discover);
    let upstream =
        BoxCloneSyncService::new(Buffer::new(balance, BUFFER).map_err(UpstreamError::new));
    let pool = Pool {
        service,
        sources,
        resolver,
        settings: settings.clone(),
        tasks: tasks.clone(),
        shared: Arc::new(Shared {
            changes,
            members: Mutex::new(HashSet::new()),
        }),
        watchers: HashMap::new(),
        last_error: None,
    };
    tasks.spawn("upstream-discovery", pool.run(tasks.shutdown().clone()));
    Ok(upstream)
}

/// A transport over one channel, unbalanced.
pub fn single(channel: Channel) -> Upstream {
    BoxCloneSyncService::new(channel.map_err(UpstreamError::new))
}

type Changes = Change<String, Tracked>;

/// One instance's channel, as the balancer holds it: a call that fails at
/// the transport (refused, reset: the instance died) wakes the instance's
/// watcher to check it at once, rather than at its next scheduled check.
/// Without this, calls refused in a microsecond make a dead instance look
/// like the fastest one to a latency-weighted balancer.
#[derive(Clone)]
pub(crate) struct Tracked {
    channel: Channel,
    suspect: Arc<tokio::sync::Notify>,
}

impl tower::Service<http::Request<Body>> for Tracked {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let call = self.channel.call(req);
        let suspect = self.suspect.clone();
        Box::pin(async move {
            let result = call.await;
            if result.is_err() {
                suspect.notify_one();
            }
            result
        })
    }
}

fn changes_stream(
    mut rx: mpsc::UnboundedReceiver<Changes>,
) -> impl futures::Stream<Item = Result<Changes, std::convert::Infallible>> + Send + Unpin {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok)))
}

/// What the pool and its watchers share. Every change to the balancer is
/// sent while `members` is locked, so the balancer sees changes in the
/// order the member set took them.
struct Shared {
    changes: mpsc::UnboundedSender<Changes>,
    // The instances now in the balancer.
    members: Mutex<HashSet<String>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The instances of one service: discovery, and one watcher per instance.
struct Pool {
    service: &'static str,
    sources: Vec<Source>,
    resolver: Arc<dyn Resolve>,
    settings: UpstreamSettings,
    tasks: Tasks,
    shared: Arc<Shared>,
    // Each known instance's watcher, stopped when it leaves.
    watchers: HashMap<String, CancellationToken>,
    last_error: Option<String>,
}

impl Pool {
    async fn run(mut self, shutdown: CancellationToken) {
        let dynamic = self.sources.iter().any(Source::is_dynamic);
        loop {
            match resolve_all(&self.sources, &*self.resolver).await {
                Ok(urls) => {
                    self.last_error = None;
                    self.sync(&urls, &shutdown);
                }
                Err(err) => {
                    if self.last_error.as_ref() != Some(&err) {
                        tracing::warn!(service = self.service, error = %err, "instance discovery failed; keeping the instances known");
                    }
                    self.last_error = Some(err);
                }
            }
            let wait = if dynamic || self.last_error.is_some() {
                self.settings.dns_refresh
            } else {
                // A fixed list never changes; only shutdown is left to wait for.
                Duration::MAX
            };
            tokio::select! {
                () = tokio::time::sleep(wait.min(Duration::from_secs(86_400))) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn sync(&mut self, urls: &BTreeSet<String>, shutdown: &CancellationToken) {
        for url in urls {
            if self.watchers.contains_key(url) {
                continue;
            }
            let channel = match endpoint(url) {
                Ok(e) => e.connect_lazy(),
                Err(err) => {
                    tracing::warn!(service = self.service, instance = %url, error = %err, "instance has an invalid URL");
                    continue;
                }
            };
            let token = shutdown.child_token();
            let watcher = Watcher {
                service: self.service,
                url: url.clone(),
                channel,
                suspect: Arc::default(),
                shared: self.shared.clone(),
                interval: self.settings.health_interval,
                failures: self.settings.health_failures,
            };
            // New instances take calls at once: a name lists only ready
            // pods, and a fixed list is what the operator asked for. The
            // health checks take out whichever is not serving.
            watcher.insert();
            self.tasks
                .spawn("upstream-health", watcher.run(token.clone()));
            self.watchers.insert(url.clone(), token);
        }
        let gone: Vec<String> = self
            .watchers
            .keys()
            .filter(|url| !urls.contains(*url))
            .cloned()
            .collect();
        for url in gone {
            if let Some(token) = self.watchers.remove(&url) {
                token.cancel();
            }
            let mut members = self.shared.lock();
            if members.remove(&url) {
                let _ = self.shared.changes.send(Change::Remove(url.clone()));
            }
            tracing::info!(service = self.service, instance = %url, "instance no longer listed; no calls go to it");
        }
        metrics::gauge!("chatmesh_upstream_instances", "service" => self.service)
            .set(self.shared.lock().len() as f64);
    }
}

struct Watcher {
    service: &'static str,
    url: String,
    channel: Channel,
    suspect: Arc<tokio::sync::Notify>,
    shared: Arc<Shared>,
    interval: Duration,
    failures: u32,
}

impl Watcher {
    async fn run(self, stop: CancellationToken) {
        let mut failures = 0_u32;
        // The first check at once, then every interval; after a failed
        // check, or a call that failed at the transport, sooner.
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.suspect.notified() => {}
                () = stop.cancelled() => return,
            }
            let check = crate::health::serving(self.channel.clone());
            let serving = matches!(tokio::time::timeout(self.interval, check).await, Ok(Ok(())));
            if stop.is_cancelled() {
                return;
            }
            failures = if serving {
                0
            } else {
                failures.saturating_add(1)
            };
            if serving {
                self.insert();
            } else if failures >= self.failures {
                self.remove();
            }
            wait = if serving || failures >= self.failures {
                self.interval
            } else {
                RECHECK.min(self.interval)
            };
        }
    }

    /// Puts the instance in the balancer unless it is there.
    fn insert(&self) {
        let mut members = self.shared.lock();
        if members.contains(&self.url) {
            return;
        }
        let tracked = Tracked {
            channel: self.channel.clone(),
            suspect: self.suspect.clone(),
        };
        let change = Change::Insert(self.url.clone(), tracked);
        if self.shared.changes.send(change).is_ok() {
            members.insert(self.url.clone());
            metrics::gauge!("chatmesh_upstream_instances", "service" => self.service)
                .set(members.len() as f64);
            tracing::info!(service = self.service, instance = %self.url, "instance healthy; calls go to it");
        }
    }

    /// Takes the instance out of the balancer, unless it is the last one.
    fn remove(&self) {
        let mut members = self.shared.lock();
        if members.len() <= 1 || !members.remove(&self.url) {
            return;
        }
        let _ = self.shared.changes.send(Change::Remove(self.url.clone()));
        metrics::gauge!("chatmesh_upstream_instances", "service" => self.service)
            .set(members.len() as f64);
        metrics::counter!("chatmesh_upstream_ejections_total", "service" => self.service)
            .increment(1);
        tracing::warn!(service = self.service, instance = %self.url, "instance failed its health checks; no calls go to it");
    }
}

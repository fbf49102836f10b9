//! The container image runs the mesh as the Helm chart configures it. The
//! image comes from `scripts/image build` (a no-op when the binaries are
//! unchanged); each pod's configuration from `scripts/chart pods`, which
//! renders the chart and resolves what the kubelet would (Secret values,
//! field references, mounted files). The containers run on the host
//! network against the local infrastructure, with only their listen and
//! peer addresses moved to loopback ports, and a message sent through one
//! gateway's WebSocket reaches a client of the other and lands in storage.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::process::scratch_dir;
use chatmesh_integration_tests::sandbox::channel;
use chatmesh_integration_tests::{Infra, wait};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_proto::common::v1::ModerationPolicy;
use serde::Deserialize;
use serde_json::{Value, json};

/// The runtime that works on these machines; podman's default crun does not.
const RUNTIME: &str = "/usr/sbin/runc";
const HS256: &str = "image-test-secret-0123456789";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests sits in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// What `scripts/chart pods` writes for one pod.
#[derive(Debug, Deserialize)]
struct Pod {
    component: String,
    binary: String,
    config: String,
    env: BTreeMap<String, String>,
    mounts: Vec<(PathBuf, String)>,
}

/// Containers started by the test, removed however it ends.
#[derive(Debug, Default)]
struct Containers(Vec<String>);

impl Containers {
    fn logs(&self) -> String {
        let mut out = String::new();
        for name in &self.0 {
            if let Ok(o) = Command::new("podman")
                .args(["logs", "--tail", "20", name])
                .output()
            {
                out.push_str(&format!(
                    "--- {name}\n{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        }
        out
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = Command::new("podman")
                .args(["rm", "--force", "--time", "2"])
                .args(&self.0)
                .output();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    // With host networking the container binds the port itself; the
    // window between this probe and its bind is the price of podman.
    chatmesh_integration_tests::process::free_port()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The chart's values for the local infrastructure: every dependency as
/// `scripts/infra` runs it, a run-private topic, group and ring, and
/// development tokens so the test can log in.
fn values(infra: &Infra, run: &str, topic: &str) -> anyhow::Result<Value> {
    let db = |url: &str| -> anyhow::Result<(String, u16, String)> {
        let u = reqwest::Url::parse(url)?;
        Ok((
            u.host_str()
                .context("database URL without host")?
                .to_owned(),
            u.port().unwrap_or(5432),
            u.path().trim_start_matches('/').to_owned(),
        ))
    };
    let (host, port, database) = db(&infra.directory_url)?;
    let n = infra.shard_urls.len() as u32;
    let mut shards = Vec::new();
    for (i, url) in infra.shard_urls.iter().enumerate() {
        let (host, port, database) = db(url)?;
        let i = i as u32;
        shards.push(json!({
            "name": format!("shard_{i}"), "host": host, "port": port, "database": database,
            "firstBucket": 256 * i / n, "lastBucket": 256 * (i + 1) / n - 1,
        }));
    }
    let user = reqwest::Url::parse(&infra.directory_url)?
        .username()
        .to_owned();
    Ok(json!({
        "redis": {"nodes": infra.redis_nodes},
        "kafka": {"brokers": infra.kafka_brokers, "topic": topic},
        // The local servers trust loopback: no password to hand over.
        "postgres": {"user": user, "passwordKey": "",
                     "directory": {"host": host, "port": port, "database": database}},
        "shards": {"buckets": 256, "databases": shards},
        "media": {"s3": {"endpoint": infra.s3_endpoint, "region": infra.s3_region, "bucket": infra.s3_bucket}},
        "secrets": {"data": {
            "s3-access-key": infra.s3_access_key,
            "s3-secret-key": infra.s3_secret_key,
            "jwt-hs256-secret": HS256,
        }},
        "gateway": {
            "auth": {"hs256SecretKey": "jwt-hs256-secret", "devTokens": true},
            "config": {"routing": {"mode": "serve", "cluster": format!("image-{run}")}},
        },
        "presence": {"config": {"presence": {"group": format!("image-{run}")}}},
        "storage": {"config": {"consumer_group": format!("image-{run}")}},
    }))
}

/// Builds (or finds) the image of the current binaries: by default the
/// dev-profile ones `make test` has just built, so the test compiles
/// nothing; `CHATMESH_IMAGE_PROFILE=release` tests the image `make image`
/// ships. Both come from the same Containerfile and runtime files.
fn image(repo: &Path) -> anyhow::Result<String> {
    let profile = std::env::var("CHATMESH_IMAGE_PROFILE").unwrap_or_else(|_| "dev".into());
    let mut build = Command::new(repo.join("scripts/image"));
    build.arg("build").env("CHATMESH_IMAGE_PROFILE", profile);
    // The nested cargo must see the environment `make test` built with:
    // what cargo sets for a test run would make build scripts rerun.
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        let kept = var == "CARGO_HOME" || var == "CARGO_TARGET_DIR";
        if (var.starts_with("CARGO") && !kept) || var == "LD_LIBRARY_PATH" {
            build.env_remove(&*var);
        }
    }
    let out = run(&mut build)?;
    String::from_utf8(out.stdout)?
        .lines()
        .last()
        .map(str::to_owned)
        .context("scripts/image build printed no image name")
}

fn pods(repo: &Path, dir: &Path, values: &Value) -> anyhow::Result<Vec<Pod>> {
    let file = dir.join("values.json");
    std::fs::write(&file, serde_json::to_vec_pretty(values)?)?;
    let out = dir.join("pods");
    run(Command::new(repo.join("scripts/chart"))
        .arg("pods")
        .arg(&out)
        .arg("-f")
        .arg(&file))?;
    let mut pods = Vec::new();
    for entry in std::fs::read_dir(&out)? {
        let text = std::fs::read_to_string(entry?.path().join("pod.json"))?;
        pods.push(serde_json::from_str(&text)?);
    }
    pods.sort_by(|a: &Pod, b: &Pod| a.env["POD_NAME"].cmp(&b.env["POD_NAME"]));
    Ok(pods)
}

/// Loopback addresses for each service, and for each gateway in order.
#[derive(Debug)]
struct Ports {
    services: BTreeMap<String, (u16, u16)>,
    gateways: Vec<u16>,
}

impl Ports {
    fn pick(pods: &[Pod]) -> anyhow::Result<Self> {
        let mut ports = Self {
            services: BTreeMap::new(),
            gateways: Vec::new(),
        };
        for pod in pods {
            if pod.component == "gateway" {
                ports.gateways.push(free_port()?);
            } else {
                ports
                    .services
                    .insert(pod.component.clone(), (free_port()?, free_port()?));
            }
        }
        Ok(ports)
    }

    /// The overrides that move a pod from cluster addresses to loopback.
    fn overrides(&self, pod: &Pod, gateway_index: usize) -> Vec<(String, String)> {
        if pod.component == "gateway" {
            let port = self.gateways[gateway_index];
            let mut env = vec![
                ("CHATMESH_HTTP_ADDR".into(), format!("127.0.0.1:{port}")),
                (
                    "CHATMESH_PUBLIC_URL".into(),
                    format!("ws://127.0.0.1:{port}"),
                ),
            ];
            for (name, (grpc, _)) in &self.services {
                env.push((
                    format!("CHATMESH_SERVICES__{}", name.to_uppercase()),
                    format!("http://127.0.0.1:{grpc}"),
                ));
            }
            env
        } else {
            let (grpc, admin) = self.services[&pod.component];
            vec![
                (
                    "CHATMESH_SERVER__GRPC_ADDR".into(),
                    format!("127.0.0.1:{grpc}"),
                ),
                (
                    "CHATMESH_SERVER__ADMIN_ADDR".into(),
                    format!("127.0.0.1:{admin}"),
                ),
            ]
        }
    }
}

/// podman's default limits (nofile 1048576, nproc 32768) are above what a
/// container may set on these machines: ask for this process's own.
fn ulimits() -> anyhow::Result<[String; 4]> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .filter(|hard| hard.parse::<u64>().is_ok())
        .unwrap_or("1048576")
        .to_owned();
    Ok([
        "--ulimit".into(),
        format!("nofile={nofile}:{nofile}"),
        "--ulimit".into(),
        "nproc=16384:16384".into(),
    ])
}

/// Starts one pod's container the way the chart runs it: its binary, its
/// environment and volumes, a read-only root, no capabilities.
fn start(image: &str, name: &str, pod: &Pod, overrides: &[(String, String)]) -> anyhow::Result<()> {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", RUNTIME, "run", "--detach", "--name", name])
        .args(ulimits()?)
        .args(["--network", "host", "--read-only", "--tmpfs", "/tmp"])
        .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
        .arg("--env")
        .arg(format!("CHATMESH_CONFIG={}", pod.config));
    for (k, v) in pod.env.iter().chain(overrides.iter().map(|(k, v)| (k, v))) {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    for (host, path) in &pod.mounts {
        cmd.arg("--volume")
            .arg(format!("{}:{path}:ro", host.display()));
    }
    cmd.arg(image).arg(format!("/usr/local/bin/{}", pod.binary));
    run(&mut cmd)?;
    Ok(())
}

async fn ready(addr: SocketAddr) -> anyhow::Result<()> {
    let response = reqwest::get(format!("http://{addr}/readyz")).await?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{status}: {}", response.text().await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_the_mesh_as_the_chart_configures_it() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let repo = repo_root();
    let image = image(&repo)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let topic = format!("chatmesh.image.{run_id}");
    infra.create_topic(&topic).await?;
    let dir = scratch_dir("chatmesh-image")?;
    let pods = pods(&repo, &dir, &values(&infra, &run_id, &topic)?)?;
    let ports = Ports::pick(&pods)?;

    let mut containers = Containers::default();
    let mut gateways = 0;
    for pod in &pods {
        let name = format!("chatmesh-test-{run_id}-{}", pod.env["POD_NAME"]);
        let overrides = ports.overrides(pod, gateways);
        gateways += usize::from(pod.component == "gateway");
        containers.0.push(name.clone());
        start(&image, &name, pod, &overrides)?;
    }
    let mut admin: Vec<SocketAddr> = ports.services.values().map(|(_, a)| loopback(*a)).collect();
    admin.extend(ports.gateways.iter().map(|p| loopback(*p)));
    for addr in admin {
        if let Err(err) = wait::until(&format!("{addr} ready"), Duration::from_secs(90), || {
            ready(addr)
        })
        .await
        {
            anyhow::bail!("{err}\n{}", containers.logs());
        }
    }

    // What `helm test` runs: the image's healthcheck against every service.
    let mut check = Command::new("podman");
    check
        .args(["--runtime", RUNTIME, "run", "--rm"])
        .args(ulimits()?)
        .args(["--network", "host", "--read-only", &image])
        .arg("/usr/local/bin/chatmesh-healthcheck");
    for (grpc, _) in ports.services.values() {
        check.arg(format!("grpc://127.0.0.1:{grpc}"));
    }
    check.arg(format!("http://127.0.0.1:{}/readyz", ports.gateways[0]));
    run(&mut check)?;

    let room = format!("image-{run_id}");
    let mut directory = ChatServiceClient::new(channel(loopback(ports.services["chat"].0)));
    directory
        .create_channel(chat::CreateChannelRequest {
            channel_id: room.clone(),
            name: room.clone(),
            created_by: "alice".into(),
            moderation: ModerationPolicy::Reject as i32,
            ..Default::default()
        })
        .await?;
    directory
        .join_channel(chat::JoinChannelRequest {
            channel_id: room.clone(),
            user_id: "bob".into(),
            ..Default::default()
        })
        .await?;

    let (gw0, gw1) = (loopback(ports.gateways[0]), loopback(ports.gateways[1]));
    let mut alice = Client::connect(gw0, &dev_token(gw0, "alice").await?, None).await?;
    let bob_token = dev_token(gw1, "bob").await?;
    let mut bob = Client::connect(gw1, &bob_token, None).await?;
    alice.subscribe(&room).await?;
    bob.subscribe(&room).await?;
    alice
        .send(json!({"type": "send", "request_id": "r1", "channel_id": room, "body": "hello from the image"}))
        .await?;
    let ack = alice.expect("ack").await?;
    let got = bob.expect("message").await?;
    assert_eq!(got["body"], "hello from the image");
    assert_eq!(got["message_id"], ack["message_id"]);

    // Through Kafka into a shard, read back by storage over the gateway.
    let url = format!("http://{gw1}/v1/channels/{room}/messages");
    let http = reqwest::Client::new();
    wait::until("the message in history", Duration::from_secs(30), || {
        let (http, url, token) = (http.clone(), url.clone(), bob_token.clone());
        async move {
            let page: Value = http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::ensure!(
                page["messages"].as_array().map(Vec::len) == Some(1),
                "{page}"
            );
            Ok(())
        }
    })
    .await?;

    // SIGTERM drains every container well inside the chart's grace period.
    let stop = Command::new("podman")
        .args(["stop", "--time", "20"])
        .args(&containers.0)
        .output()?;
    anyhow::ensure!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    for name in &containers.0 {
        let code =
            run(Command::new("podman").args(["inspect", "--format", "{{.State.ExitCode}}", name]))?;
        let code = String::from_utf8_lossy(&code.stdout).trim().to_owned();
        anyhow::ensure!(
            code == "0",
            "{name} exited with {code}\n{}",
            containers.logs()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

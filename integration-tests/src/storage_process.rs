//! The storage service as a process of its own, built from the workspace's
//! binary, so a test can SIGKILL it the way a crashed node dies and start it
//! again on the same configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Child;

use crate::{Infra, process};

/// A running storage process.
#[derive(Debug)]
pub struct StorageProcess {
    binary: PathBuf,
    dir: PathBuf,
    child: Child,
    starts: u32,
    /// gRPC address of the current process.
    pub grpc: SocketAddr,
    /// Admin (`/metrics`, `/readyz`) address of the current process.
    pub admin: SocketAddr,
}

/// Storage configuration consuming `topic` in `group` into the shards of
/// `infra`, with `extra` TOML appended (top-level fields go before any
/// table, so `extra` holds tables only; see [`with_fields`]). Logs are JSON
/// so the process's addresses can be read back; ports are ephemeral. The
/// group instance ID is left to its default, the host name, as a shipped
/// configuration leaves it.
pub fn config(infra: &Infra, topic: &str, group: &str, lag_interval: &str, extra: &str) -> String {
    format!(
        "consumer_group = {group:?}\nlag_interval = {lag_interval:?}\n[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\nprobe_interval = \"200ms\"\nshutdown_grace = \"2s\"\n[telemetry]\nlog = \"info\"\njson = true\n{}[directory]\nurl = {:?}\n{}{extra}",
        infra.kafka_toml_for(topic),
        infra.directory_url,
        Infra::shards_toml(&infra.shard_urls, 256)
    )
}

/// `config` with the top-level `fields` (TOML lines such as
/// `instance_id = "storage-a"`) put first, where top-level keys must be.
pub fn with_fields(config: &str, fields: &[&str]) -> String {
    let mut out = String::new();
    for field in fields {
        out.push_str(field);
        out.push('\n');
    }
    out.push_str(config);
    out
}

impl StorageProcess {
    /// Writes `config` to a fresh directory and starts the process on it.
    pub async fn start(config: &str) -> anyhow::Result<Self> {
        let binary = process::binary("chatmesh-storage")?;
        let dir = process::scratch_dir("chatmesh-storage")?;
        std::fs::write(dir.join("storage.toml"), config)?;
        let (child, grpc, admin) = spawn(&binary, &dir, 0).await?;
        Ok(Self {
            binary,
            dir,
            child,
            starts: 1,
            grpc,
            admin,
        })
    }

    /// Kills the process with SIGKILL: no shutdown path runs, the batch in
    /// hand is lost mid-write and its offsets are not committed.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// Stops the process with SIGTERM, as a supervisor does, and waits for
    /// it to exit; returns its exit status.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        process::terminate(&self.child)?;
        process::wait_exit(&mut self.child, timeout).await
    }

    /// Starts the process again after [`Self::kill`] or [`Self::terminate`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let (child, grpc, admin) = spawn(&self.binary, &self.dir, self.starts).await?;
        self.starts += 1;
        (self.child, self.grpc, self.admin) = (child, grpc, admin);
        Ok(())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The current process's Prometheus metrics.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("http://{}/metrics", self.admin))
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// The current process's `/readyz`: whether it is ready, and the body
    /// that lists each dependency.
    pub async fn readyz(&self) -> anyhow::Result<(bool, String)> {
        let response = reqwest::get(format!("http://{}/readyz", self.admin)).await?;
        let ready = response.status().is_success();
        Ok((ready, response.text().await?))
    }

    /// The sum of the samples of metric `name`, if the process reports it.
    pub async fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        let samples = samples(&self.metrics().await?, name);
        Ok((!samples.is_empty()).then(|| samples.iter().map(|(_, v)| v).sum()))
    }

    /// The log of the current process, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.dir, self.starts - 1)).unwrap_or_default()
    }
}

impl Drop for StorageProcess {
    fn drop(&mut self) {
        // The child is killed on drop; its files go unless a test panics
        // and someone may want to read them.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn log_path(dir: &Path, start: u32) -> PathBuf {
    dir.join(format!("storage-{start}.log"))
}

/// Starts the binary with its log in the directory and waits for the
/// `serving` line that names its bound addresses.
async fn spawn(
    binary: &Path,
    dir: &Path,
    start: u32,
) -> anyhow::Result<(Child, SocketAddr, SocketAddr)> {
    let (child, (grpc, admin)) = process::spawn_until(
        binary,
        &dir.join("storage.toml"),
        &log_path(dir, start),
        serving,
    )
    .await?;
    Ok((child, grpc, admin))
}

/// The gRPC and admin addresses of a JSON `serving` log line.
pub fn serving(line: &serde_json::Value) -> Option<(SocketAddr, SocketAddr)> {
    let fields = process::log_fields(line, "serving")?;
    Some((
        fields["grpc_addr"].as_str()?.parse().ok()?,
        fields["admin_addr"].as_str()?.parse().ok()?,
    ))
}

/// Values of the samples of metric `name` in Prometheus text, with their
/// label sets as written (`{partition="3"}`, or empty).
pub fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (labels, value) = r.split_once('}')?;
                    (format!("{{{labels}}}"), value)
                }
                None if rest.starts_with(' ') => (String::new(), rest),
                None => return None,
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

//! Helpers shared by the benchmarks: parameters, tokens, and service
//! processes started from the release binaries next to the benchmark.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_integration_tests::wait;
use serde_json::json;

/// The HS256 secret the benchmarks' gateways accept.
pub const SECRET: &str = "bench-secret-0123456789abcdef";

/// A numeric parameter from the environment, or `default`.
pub fn param(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fractional parameter from the environment, or `default`; a value that
/// is set but not a number fails, naming the variable.
pub fn param_f64(name: &str, default: f64) -> anyhow::Result<f64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// A one-hour token for `user`, signed with [`SECRET`].
pub fn token(user: &str) -> String {
    token_signed(user, SECRET)
}

/// A one-hour token for `user`, signed with `secret`.
pub fn token_signed(user: &str, secret: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": user, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// A loopback port nothing listens on right now, below the kernel's
/// ephemeral range (see the integration tests' `process::free_port`).
pub fn free_port() -> anyhow::Result<u16> {
    chatmesh_integration_tests::process::free_port()
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// The machine's load averages over 1, 5 and 15 minutes, as the kernel
/// prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// CPU time (user plus system) a process has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

/// A service binary from the same target directory as this benchmark.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("exe dir")?.join(name))
}

/// Starts `name` with the config file `config` and waits until `ready_url`
/// answers 200. The process dies with the handle.
pub async fn spawn_service(
    name: &str,
    config: &Path,
    ready_url: &str,
) -> anyhow::Result<tokio::process::Child> {
    let path = binary(name)?;
    let child = tokio::process::Command::new(&path)
        .env("CHATMESH_CONFIG", config)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    wait::until(
        &format!("{name} ready"),
        Duration::from_secs(60),
        || async move {
            reqwest::get(ready_url)
                .await?
                .error_for_status()
                .map(|_| ())
        },
    )
    .await?;
    Ok(child)
}

/// The value at quantile `p` of sorted microsecond samples, in ms.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The sum of a counter's samples (every label set) on a Prometheus text
/// page.
pub fn counter(page: &str, name: &str) -> u64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the storage service at `storage` holds message `seq` of
/// each channel named, each within `timeout`.
pub async fn wait_stored(
    storage: std::net::SocketAddr,
    messages: impl IntoIterator<Item = (String, u64)>,
    timeout: Duration,
) -> anyhow::Result<()> {
    use chatmesh_proto::storage::v1 as pb;
    let client = pb::storage_service_client::StorageServiceClient::new(
        chatmesh_integration_tests::sandbox::channel(storage),
    );
    for (channel_id, seq) in messages {
        wait::until("messages stored", timeout, || {
            let (mut client, channel_id) = (client.clone(), channel_id.clone());
            async move {
                client
                    .get_message(pb::GetMessageRequest { channel_id, seq })
                    .await
                    .map(|_| ())
            }
        })
        .await?;
    }
    Ok(())
}

//! A chatmesh binary run as a process of its own, the way it runs in
//! production: configured by a file, logging JSON, stopped by a signal.
//! Tests use it to SIGKILL a service the way a crashed node dies, or to
//! SIGTERM it and watch its shutdown path run to the end.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// How long a start may take before the process logs that it serves.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding the workspace's binaries: next to a test's `deps`
/// directory, or the directory of a binary such as the bench.
pub fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no directory")?;
    Ok(if dir.ends_with("deps") {
        dir.parent().context("deps has no parent")?.to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

/// The path of the workspace binary `name`, checked to exist.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = binary_dir()?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    Ok(path)
}

/// A fresh directory for a process's configuration and logs.
pub fn scratch_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Starts `binary` on the configuration file `config`, logging to `log`,
/// and waits until a JSON log line satisfies `ready`; returns the child
/// and what `ready` read from that line (the bound addresses, typically).
pub async fn spawn_until<T>(
    binary: &Path,
    config: &Path,
    log: &Path,
    ready: impl Fn(&serde_json::Value) -> Option<T>,
) -> anyhow::Result<(Child, T)> {
    let file = std::fs::File::create(log)?;
    let mut child = Command::new(binary)
        .env("CHATMESH_CONFIG", config)
        .env_remove("RUST_LOG")
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| ready(&v));
        if let Some(found) = found {
            return Ok((child, found));
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "{} exited with {status} on start:\n{text}",
                binary.display()
            );
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{} did not start within {START_TIMEOUT:?}:\n{text}",
            binary.display()
        );
        // Polling the log file: the process gives no other sign of life.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `fields` of a JSON log line whose message is `message`.
pub fn log_fields<'a>(line: &'a serde_json::Value, message: &str) -> Option<&'a serde_json::Value> {
    let fields = &line["fields"];
    (fields["message"] == message).then_some(fields)
}

/// Sends SIGTERM to `child`, as a supervisor does to stop it.
pub fn terminate(child: &Child) -> anyhow::Result<()> {
    let pid = child.id().context("the process has already exited")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {pid} failed: {status}");
    Ok(())
}

/// Waits at most `timeout` for `child` to exit.
pub async fn wait_exit(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    tokio::time::timeout(timeout, child.wait())
        .await
        .with_context(|| format!("the process did not exit within {timeout:?}"))?
        .map_err(Into::into)
}

/// A loopback port free right now, for a process that binds it later. The
/// port is given back at once, so that process may race another one for
/// it: good enough for a test, and the only way processes that name each
/// other can be configured before they start.
///
/// Ports come from 10000-19999, below both the kernel's ephemeral range
/// (32768 and up, where every outgoing connection takes its local port,
/// so a port picked there can be taken by a client before our server
/// binds it) and the 20000-32767 the infrastructure scripts pick from.
/// Each is handed out once per test process.
pub fn free_port() -> anyhow::Result<u16> {
    pick_port(bindable)
}

/// A port free for a Redis Cluster node: its own and its cluster bus
/// port (the same plus 10000) both free.
pub fn free_redis_port() -> anyhow::Result<u16> {
    pick_port(|port| bindable(port) && bindable(port + 10_000))
}

fn bindable(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn pick_port(free: impl Fn(u16) -> bool) -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = rand::random_range(10_000..20_000_u16);
        if !given.contains(&port) && free(port) {
            given.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port in 10000-19999")
}

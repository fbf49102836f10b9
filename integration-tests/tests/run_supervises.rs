//! `make run` supervises: a service of the local mesh that dies is started
//! again after a backoff, with a line on the console, and the rest of the
//! mesh keeps running. Runs `scripts/run` itself on the binaries already
//! built, leaving the shared infrastructure up.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chatmesh_integration_tests::{process, wait};

fn env_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_dies_is_restarted() -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let run_dir = process::scratch_dir("chatmesh-run")?;
    let bins = process::binary_dir()?;
    let target = bins.parent().map(PathBuf::from).unwrap_or_default();
    let out_path = run_dir.join("console.log");
    let console = std::fs::File::create(&out_path)?;
    let mut script = tokio::process::Command::new(repo.join("scripts/run"))
        .env("CHATMESH_RUN_DIR", &run_dir)
        .env("CHATMESH_KEEP_INFRA", "1")
        .env("CHATMESH_SKIP_BUILD", "1")
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE", "dev")
        .stdout(console.try_clone()?)
        .stderr(console)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let endpoints = run_dir.join("endpoints.env");
    let console_text = || std::fs::read_to_string(&out_path).unwrap_or_default();
    wait::until("the mesh running", Duration::from_secs(180), || async {
        anyhow::ensure!(script.id().is_some(), "scripts/run is gone");
        Ok::<_, anyhow::Error>(std::fs::read_to_string(&endpoints)?)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", console_text()))?;
    let text = std::fs::read_to_string(&endpoints)?;
    let admin = env_value(&text, "CHAT_ADMIN").ok_or_else(|| anyhow::anyhow!("no CHAT_ADMIN"))?;
    let first = std::fs::read_to_string(run_dir.join("pids/chat"))?
        .trim()
        .to_owned();
    std::process::Command::new("kill")
        .args(["-KILL", &first])
        .status()?;

    wait::until(
        "chat restarted and ready",
        Duration::from_secs(60),
        || async {
            let now = std::fs::read_to_string(run_dir.join("pids/chat"))?
                .trim()
                .to_owned();
            anyhow::ensure!(now != first, "still pid {now}");
            reqwest::get(format!("http://{admin}/readyz"))
                .await?
                .error_for_status()?;
            Ok(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", console_text()))?;
    let console = console_text();
    assert!(
        console.contains("chat exited; restarting it in 1s"),
        "{console}"
    );
    assert!(console.contains("==> chat restarted"), "{console}");
    // The others were left alone and are ready again once they see chat
    // back; the gateways were never restarted.
    let gateways = env_value(&text, "GATEWAYS").unwrap_or_default();
    let gw = gateways
        .split(',')
        .next()
        .unwrap_or_default()
        .replace("ws://", "http://");
    wait::until("the gateway ready", Duration::from_secs(30), || async {
        reqwest::get(format!("{gw}/readyz"))
            .await?
            .error_for_status()?;
        anyhow::Ok(())
    })
    .await?;
    assert!(!console.contains("gateway-0 exited"), "{console}");

    // Ctrl-C stops it all.
    std::process::Command::new("kill")
        .args(["-INT", &script.id().unwrap_or_default().to_string()])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(60), script.wait()).await??;
    assert!(
        console_text().contains("==> stopped"),
        "{status}: {}",
        console_text()
    );
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok(())
}

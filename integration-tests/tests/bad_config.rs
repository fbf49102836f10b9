//! Every binary refuses a bad configuration at start-up: it exits with
//! status 2 and names the offending field, before touching the network.

use std::path::PathBuf;
use std::process::Command;

/// The workspace's binaries sit next to the `deps` directory this test runs from.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

const SERVER: &str = "[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n";
const REDIS: &str = "[redis]\nnodes = [\"redis://127.0.0.1:1\"]\n";
const KAFKA: &str = "[kafka]\nbrokers = [\"127.0.0.1:1\"]\n";
const DIRECTORY: &str = "[directory]\nurl = \"postgres://postgres@127.0.0.1:1/d\"\n";

struct Case {
    binary: &'static str,
    config: String,
    env: &'static [(&'static str, &'static str)],
    field: &'static str,
}

fn cases() -> Vec<Case> {
    let shards = "[shards]\nbuckets = 4\n[[shards.databases]]\nname = \"s0\"\nurl = \"postgres://postgres@127.0.0.1:1/s0\"\nfirst_bucket = 0\nlast_bucket = 3\n";
    let gateway = format!(
        "node_id = \"gw-0\"\nhttp_addr = \"127.0.0.1:0\"\npublic_url = \"ws://127.0.0.1:1\"\n{REDIS}[services]\nchat = \"http://127.0.0.1:1\"\npresence = \"http://127.0.0.1:1\"\nstorage = \"http://127.0.0.1:1\"\nmedia = \"http://127.0.0.1:1\"\n[auth]\nhs256_secret = \"0123456789abcdef0123\"\n"
    );
    vec![
        Case {
            binary: "chatmesh-chat",
            config: format!("worker_id = 1\n{SERVER}{REDIS}{KAFKA}{DIRECTORY}"),
            env: &[("CHATMESH_WORKER_ID", "4096")],
            field: "worker_id",
        },
        Case {
            binary: "chatmesh-chat",
            config: format!("worker_id = 1\n{SERVER}{REDIS}{KAFKA}{DIRECTORY}"),
            env: &[("CHATMESH_SERVER__GRPC_ADR", "127.0.0.1:0")],
            field: "grpc_adr",
        },
        Case {
            binary: "chatmesh-presence",
            config: format!("{SERVER}{REDIS}"),
            env: &[("CHATMESH_REDIS__NODES", "http://127.0.0.1:1")],
            field: "redis.nodes[0]",
        },
        Case {
            binary: "chatmesh-storage",
            config: format!("{SERVER}{KAFKA}{DIRECTORY}{shards}"),
            env: &[("CHATMESH_SHARDS__BUCKETS", "8")],
            field: "shards.databases",
        },
        Case {
            binary: "chatmesh-media",
            config: format!("{SERVER}{DIRECTORY}[store]\nkind = \"local\"\nroot = \"/tmp/x\"\n"),
            env: &[("CHATMESH_SERVER__ADMIN_ADDR", "not-an-address")],
            field: "server.admin_addr",
        },
        Case {
            binary: "chatmesh-gateway",
            config: gateway.clone(),
            env: &[("CHATMESH_SERVICES__CHAT", "ftp://x")],
            field: "services.chat",
        },
        Case {
            binary: "chatmesh-gateway",
            config: gateway,
            env: &[("CHATMESH_AUTH__HS256_SECRET", "short")],
            field: "auth.hs256_secret",
        },
    ]
}

#[test]
fn bad_values_exit_non_zero_naming_the_field() {
    let dir = tempfile_dir();
    for (i, case) in cases().into_iter().enumerate() {
        let file = dir.join(format!("{i}.toml"));
        std::fs::write(&file, &case.config).unwrap();
        let output = Command::new(binary(case.binary))
            .env_clear()
            .env("CHATMESH_CONFIG", &file)
            .envs(case.env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{}: {stderr}", case.binary);
        assert!(
            stderr.contains(case.field),
            "{}: expected `{}` in: {stderr}",
            case.binary,
            case.field
        );
    }
}

#[test]
fn a_missing_config_file_is_reported() {
    let output = Command::new(binary("chatmesh-presence"))
        .env_clear()
        .env("CHATMESH_CONFIG", "/nonexistent/chatmesh.toml")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/chatmesh.toml"));
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatmesh-config-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

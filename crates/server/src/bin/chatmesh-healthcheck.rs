//! `chatmesh-healthcheck`: asks running chatmesh processes whether they
//! serve, for places that have no shell or grpcurl, such as a `helm test`
//! pod running the chatmesh image.
//!
//! ```text
//! chatmesh-healthcheck [--timeout SECS] TARGET...
//!   grpc://host:port[/service]   grpc.health.v1 Check; SERVING passes
//!   http://host:port/path        GET; a 2xx status passes
//! chatmesh-healthcheck --sleep SECS
//!   waits, then exits 0: a preStop hook for an image without `sleep`
//! ```
//!
//! Every target is checked; the exit status is 0 only when all pass.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const USAGE: &str = "usage: chatmesh-healthcheck [--timeout SECS] TARGET...\n       \
     chatmesh-healthcheck --sleep SECS\n\
     TARGET is grpc://host:port[/service] or http://host:port/path";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(Command::Sleep(d)) => {
            std::thread::sleep(d);
            ExitCode::SUCCESS
        }
        Ok(Command::Check { timeout, targets }) => check_all(timeout, &targets),
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "chatmesh-healthcheck: {why}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, PartialEq)]
enum Command {
    Sleep(Duration),
    Check {
        timeout: Duration,
        targets: Vec<Target>,
    },
}

#[derive(Debug, PartialEq)]
enum Target {
    Grpc { authority: String, service: String },
    Http { authority: String, path: String },
}

fn seconds(raw: Option<&String>) -> Result<Duration, String> {
    let raw = raw.ok_or("a number of seconds is missing")?;
    raw.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{raw}` is not a number of seconds"))
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut timeout = Duration::from_secs(3);
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sleep" if args.len() == 2 => return seconds(it.next()).map(Command::Sleep),
            "--timeout" => timeout = seconds(it.next())?,
            other => targets.push(target(other)?),
        }
    }
    if targets.is_empty() {
        return Err("no target given".into());
    }
    Ok(Command::Check { timeout, targets })
}

fn target(raw: &str) -> Result<Target, String> {
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| format!("`{raw}` has no scheme"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !authority.contains(':') {
        return Err(format!("`{raw}` needs host:port"));
    }
    let authority = authority.to_owned();
    match scheme {
        "grpc" => Ok(Target::Grpc {
            authority,
            service: path.trim_start_matches('/').to_owned(),
        }),
        "http" => Ok(Target::Http {
            authority,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        }),
        _ => Err(format!("`{raw}`: the scheme must be grpc or http")),
    }
}

fn check_all(timeout: Duration, targets: &[Target]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "chatmesh-healthcheck: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for t in targets {
        let result = runtime.block_on(async {
            tokio::time::timeout(timeout, check(t))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
        });
        let (authority, what) = match t {
            Target::Grpc { authority, service } => (authority, format!("grpc {service:?}")),
            Target::Http { authority, path } => (authority, format!("http {path}")),
        };
        let line = match &result {
            Ok(()) => format!("ok       {authority} {what}"),
            Err(why) => format!("FAILED   {authority} {what}: {why}"),
        };
        failed |= result.is_err();
        let _ = writeln!(std::io::stdout(), "{line}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn check(target: &Target) -> Result<(), String> {
    match target {
        Target::Grpc { authority, service } => grpc(authority, service).await,
        Target::Http { authority, path } => http(authority, path).await,
    }
}

async fn grpc(authority: &str, service: &str) -> Result<(), String> {
    let channel = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner()
        .status();
    match status {
        ServingStatus::Serving => Ok(()),
        other => Err(other.as_str_name().to_owned()),
    }
}

/// HTTP/1.0 by hand: one GET and its status line is all a probe needs.
async fn http(authority: &str, path: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("not an HTTP response")?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        Err(format!("status {status}: {}", body.replace('\n', "; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn targets_are_parsed() {
        let cmd = parse(&args(&[
            "--timeout",
            "1.5",
            "grpc://chat:50051",
            "grpc://chat:50051/chatmesh.chat.v1.ChatService",
            "http://gw:8080/readyz",
        ]))
        .unwrap();
        assert_eq!(
            cmd,
            Command::Check {
                timeout: Duration::from_millis(1500),
                targets: vec![
                    Target::Grpc {
                        authority: "chat:50051".into(),
                        service: String::new()
                    },
                    Target::Grpc {
                        authority: "chat:50051".into(),
                        service: "chatmesh.chat.v1.ChatService".into()
                    },
                    Target::Http {
                        authority: "gw:8080".into(),
                        path: "/readyz".into()
                    },
                ],
            }
        );
        assert_eq!(
            parse(&args(&["--sleep", "5"])).unwrap(),
            Command::Sleep(Duration::from_secs(5))
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &[][..],
            &["chat:50051"],
            &["grpc://chat"],
            &["ftp://chat:21"],
            &["--timeout", "soon", "grpc://chat:1"],
            &["--sleep"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_target_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let target = Target::Http {
            authority: addr.to_string(),
            path: "/readyz".into(),
        };
        assert!(check(&target).await.is_err());
    }
}

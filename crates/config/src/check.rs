//! `--check-config`: load and validate a binary's configuration exactly as
//! start-up does, then exit without touching the network. Deployment
//! tooling runs it on rendered configuration (a Helm chart's ConfigMaps,
//! say) so a value the binary would refuse fails before it ships.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::de::DeserializeOwned;

use crate::{ConfigError, Env, Validate, load, load_from_env};

/// The flag that asks for a check instead of a run.
pub const CHECK_FLAG: &str = "--check-config";

/// What a check found.
#[derive(Debug)]
pub enum CheckOutcome {
    /// The configuration loads and validates.
    Valid,
    /// The configuration is refused, with the error start-up would print.
    Invalid(ConfigError),
    /// The command line is not `--check-config [FILE]`.
    Usage,
}

/// Runs the check when `args` (the process arguments without the program
/// name) start with `--check-config`; `None` means run normally. The file
/// given after the flag replaces `CHATMESH_CONFIG`; the `CHATMESH_*`
/// overrides in `env` apply either way, as they do at start-up.
pub fn check_config<T: DeserializeOwned + Validate>(
    args: &[OsString],
    env: &Env,
) -> Option<CheckOutcome> {
    let (first, rest) = args.split_first()?;
    if first != CHECK_FLAG {
        return None;
    }
    let result = match rest {
        [] => load_from_env::<T>(env),
        [file] => load::<T>(Some(&PathBuf::from(file)), env),
        _ => return Some(CheckOutcome::Usage),
    };
    Some(match result {
        Ok(_) => CheckOutcome::Valid,
        Err(err) => CheckOutcome::Invalid(err),
    })
}

/// The `main` side of [`check_config`] for the process's own arguments and
/// environment: prints `OK` (exit 0) or the error (exit 2, as start-up does
/// on a bad configuration). `None` means the binary should run normally.
pub fn check_config_main<T: DeserializeOwned + Validate>(binary: &str) -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let env: Env = std::env::vars().collect();
    Some(match check_config::<T>(&args, &env)? {
        CheckOutcome::Valid => {
            let _ = writeln!(std::io::stdout(), "{binary}: config OK");
            ExitCode::SUCCESS
        }
        CheckOutcome::Invalid(err) => {
            let _ = writeln!(std::io::stderr(), "{binary}: {err}");
            ExitCode::from(2)
        }
        CheckOutcome::Usage => {
            let _ = writeln!(std::io::stderr(), "usage: {binary} {CHECK_FLAG} [FILE]");
            ExitCode::from(2)
        }
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::Invalid;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        port: u16,
    }

    impl Validate for Demo {
        fn validate(&self) -> Result<(), Invalid> {
            if self.port == 0 {
                return Err(Invalid::new("port", "must not be 0"));
            }
            Ok(())
        }
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn other_arguments_run_the_binary() {
        assert!(check_config::<Demo>(&args(&[]), &Env::new()).is_none());
        assert!(check_config::<Demo>(&args(&["--verbose"]), &Env::new()).is_none());
    }

    #[test]
    fn a_file_is_checked_with_the_overrides() {
        let f = file("port = 80\n");
        let path = f.path().to_str().unwrap();
        let ok = check_config::<Demo>(&args(&[CHECK_FLAG, path]), &Env::new());
        assert!(matches!(ok, Some(CheckOutcome::Valid)), "{ok:?}");
        let env = Env::from([("CHATMESH_PORT".into(), "0".into())]);
        match check_config::<Demo>(&args(&[CHECK_FLAG, path]), &env) {
            Some(CheckOutcome::Invalid(err)) => assert_eq!(err.field(), Some("port")),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn without_a_file_the_environment_names_it() {
        let f = file("port = 8080\n");
        let env = Env::from([("CHATMESH_CONFIG".into(), f.path().to_str().unwrap().into())]);
        let ok = check_config::<Demo>(&args(&[CHECK_FLAG]), &env);
        assert!(matches!(ok, Some(CheckOutcome::Valid)), "{ok:?}");
        let usage = check_config::<Demo>(&args(&[CHECK_FLAG, "a", "b"]), &env);
        assert!(matches!(usage, Some(CheckOutcome::Usage)), "{usage:?}");
    }
}

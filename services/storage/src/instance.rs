//! The instance ID under which this process is a static member of its
//! consumer group (`group.instance.id`). It must survive a restart, so a
//! restarted process takes its own place back, and differ between live
//! processes, or the broker fences one of them.

use chatmesh_config::{Env, Invalid};

/// Longest instance ID the broker accepts.
const MAX_LEN: usize = 249;

/// Where the instance ID came from, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `instance_id` in the file, or `CHATMESH_INSTANCE_ID`.
    Config,
    /// `POD_NAME`, a Kubernetes pod's name (stable in a StatefulSet).
    PodName,
    /// The host name.
    HostName,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Config => "instance_id",
            Self::PodName => "POD_NAME",
            Self::HostName => "host name",
        }
    }
}

/// The configured instance ID, else `POD_NAME` from `env`, else the host
/// name `host` returns. The ID is checked the way the broker checks it.
pub(crate) fn resolve(
    configured: Option<&str>,
    env: &Env,
    host: impl FnOnce() -> Option<String>,
) -> Result<(String, Source), Invalid> {
    let (id, source) = match (configured, env.get("POD_NAME")) {
        (Some(id), _) => (id.to_owned(), Source::Config),
        (None, Some(pod)) if !pod.is_empty() => (pod.clone(), Source::PodName),
        _ => (
            host().ok_or_else(|| {
                Invalid::new(
                    "instance_id",
                    "not set, and neither POD_NAME nor the host name is available",
                )
            })?,
            Source::HostName,
        ),
    };
    check(&id).map_err(|reason| Invalid::new(source.as_str(), reason))?;
    Ok((id, source))
}

/// The host name, if the system has one.
pub(crate) fn host_name() -> Option<String> {
    whoami::hostname().ok().filter(|h| !h.is_empty())
}

/// The broker's rule: 1 to 249 characters of `[a-zA-Z0-9._-]`.
pub(crate) fn check(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_LEN {
        return Err(format!("must be 1 to {MAX_LEN} characters"));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{id}` has {bad:?}; only letters, digits, `.`, `_` and `-` are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn host() -> Option<String> {
        Some("node-7".into())
    }

    #[test]
    fn the_configured_id_wins_then_the_pod_name_then_the_host_name() {
        let pod = env(&[("POD_NAME", "storage-2")]);
        assert_eq!(
            resolve(Some("storage-a"), &pod, host),
            Ok(("storage-a".into(), Source::Config))
        );
        assert_eq!(
            resolve(None, &pod, host),
            Ok(("storage-2".into(), Source::PodName))
        );
        assert_eq!(
            resolve(None, &Env::new(), host),
            Ok(("node-7".into(), Source::HostName))
        );
        assert_eq!(
            resolve(None, &env(&[("POD_NAME", "")]), host),
            Ok(("node-7".into(), Source::HostName))
        );
    }

    #[test]
    fn no_id_at_all_names_the_field_to_set() {
        let err = resolve(None, &Env::new(), || None).unwrap_err();
        assert_eq!(err.field, "instance_id");
    }

    #[test]
    fn an_id_the_broker_would_refuse_names_where_it_came_from() {
        let err = resolve(Some("storage 0"), &Env::new(), host).unwrap_err();
        assert_eq!(err.field, "instance_id");
        assert!(err.reason.contains("' '"), "{}", err.reason);
        let pod = env(&[("POD_NAME", "storage/0")]);
        assert_eq!(resolve(None, &pod, host).unwrap_err().field, "POD_NAME");
        let long = "a".repeat(MAX_LEN + 1);
        assert!(check(&long).is_err());
        assert!(check(&"a".repeat(MAX_LEN)).is_ok());
    }
}

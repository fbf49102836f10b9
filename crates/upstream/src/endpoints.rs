//! How a service's instances are written in its caller's configuration:
//! `http://host:port`; several instances as a TOML list (or one
//! comma-separated string, as a `CHATMESH_*` override gives it); or
//! `dns://name:port`, every address of the name an instance (a Kubernetes
//! headless Service). A list may mix both kinds.

use chatmesh_config::Invalid;
use serde::Deserialize;

use crate::discover::Source;

/// An endpoints value that cannot be called: an entry that is neither a
/// `dns://host:port` name nor a valid URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEndpoints(pub(crate) String);

/// Deserializes an endpoints field from one string or a list of them
/// (`#[serde(deserialize_with = "chatmesh_upstream::endpoints::deserialize")]`),
/// a list joined with commas.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => one,
        OneOrMany::Many(many) => many.join(","),
    })
}

/// Checks the endpoints value of `field`: at least one entry, each a
/// well-formed `dns://host:port` or an `http(s)://` URL.
pub fn validate(field: &str, endpoints: &str) -> Result<(), Invalid> {
    let entries = instances(endpoints);
    if entries.is_empty() {
        return Err(Invalid::new(field, "needs at least one URL"));
    }
    for entry in entries {
        match Source::parse(entry) {
            Ok(Source::Url(url)) => {
                check_url(&url).map_err(|reason| Invalid::new(field, reason))?
            }
            Ok(Source::Dns { .. }) => {}
            Err(reason) => return Err(Invalid::new(field, reason)),
        }
    }
    Ok(())
}

/// The entries of an endpoints value.
pub(crate) fn instances(endpoints: &str) -> Vec<&str> {
    endpoints
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn check_url(raw: &str) -> Result<(), String> {
    const SCHEMES: [&str; 2] = ["http", "https"];
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if !SCHEMES.contains(&url.scheme()) {
        return Err(format!("`{raw}` must use one of the schemes {SCHEMES:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Services {
        #[serde(deserialize_with = "deserialize")]
        chat: String,
    }

    fn chat(value: &str) -> String {
        toml::from_str::<Services>(&format!("chat = {value}"))
            .unwrap()
            .chat
    }

    #[test]
    fn a_service_takes_one_url_or_a_list() {
        assert_eq!(chat("\"http://a:1\""), "http://a:1");
        let listed = chat("[\"http://a:1\", \"http://b:2\"]");
        assert_eq!(instances(&listed), ["http://a:1", "http://b:2"]);
        assert_eq!(
            instances("http://a:1, http://b:2,"),
            ["http://a:1", "http://b:2"]
        );
    }

    #[test]
    fn every_entry_is_checked() {
        validate("s", "http://a:1,https://b:2,dns://c-headless:50051").unwrap();
        for bad in ["", " , ", "http://a:1,ftp://b:2", "dns://c", "not a url"] {
            let err = validate("s", bad).unwrap_err();
            assert_eq!(err.field, "s", "{bad}");
        }
    }
}

//! Loading a binary's configuration: a TOML file named by `CHATMESH_CONFIG`,
//! then `CHATMESH_SECTION__FIELD` environment overrides, then validation.
//!
//! Hand-written rather than built on a layered-config crate: the overrides
//! are merged into the TOML table before it is deserialised, so the typed
//! structs' `deny_unknown_fields` rejects a misspelt variable exactly as it
//! rejects a misspelt key, and every error names the file or variable and
//! the field path. The environment comes in as a map, so tests never set
//! process variables. It is small enough that a dependency would cost more
//! than it saves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::Validate;

/// Prefix of every variable that overrides a configuration field.
const PREFIX: &str = "CHATMESH_";
/// Variables with the prefix that belong to the local tooling (scripts/infra,
/// scripts/run), not to a binary's config.
const RESERVED: &[&str] = &[
    "CHATMESH_CONFIG",
    "CHATMESH_CACHE",
    "CHATMESH_INFRA_DIR",
    "CHATMESH_RUN_DIR",
    "CHATMESH_KEEP_INFRA",
    "CHATMESH_SKIP_BUILD",
    "CHATMESH_PG_BIN",
    // scripts/image and scripts/chart
    "CHATMESH_IMAGE",
    "CHATMESH_IMAGE_BASE",
    "CHATMESH_IMAGE_PROFILE",
    "CHATMESH_CONTAINER_RUNTIME",
    "CHATMESH_BIN_DIR",
    // scripts/run's demo page and its server (clients/web/server.mjs)
    "CHATMESH_RUN_WEB",
];

/// Families of variables that belong to other programs of the project:
/// the demo page's server (`clients/web/server.mjs`).
const RESERVED_PREFIXES: &[&str] = &["CHATMESH_WEB_"];

/// The process environment as a plain map, so tests pass their own.
pub type Env = BTreeMap<String, String>;

/// Why a configuration could not be loaded. Every variant names its source
/// and, where there is one, the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A variable names a nesting path that clashes with a scalar value.
    #[error("environment variable {var} cannot set `{field}`: `{parent}` is not a table")]
    EnvPath {
        /// The variable.
        var: String,
        /// The field it tried to set.
        field: String,
        /// The ancestor that already holds a scalar.
        parent: String,
    },
    /// A variable indexes an array element that does not exist, e.g.
    /// `CHATMESH_SHARDS__DATABASES__4__URL` with four databases.
    #[error("environment variable {var} cannot set `{field}`: `{array}` has no element `{index}`")]
    EnvIndex {
        /// The variable.
        var: String,
        /// The field it tried to set.
        field: String,
        /// The array it indexed.
        array: String,
        /// The index it named.
        index: String,
    },
    /// A field has the wrong type, is missing, or is unknown.
    #[error("invalid config field `{field}`: {message}")]
    Field {
        /// Dotted path of the field.
        field: String,
        /// What serde found wrong.
        message: String,
    },
    /// A field is well-formed but its value is refused.
    #[error("invalid config field `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// The dotted path of the offending field, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Field { field, .. }
            | Self::Invalid { field, .. }
            | Self::EnvPath { field, .. }
            | Self::EnvIndex { field, .. } => Some(field),
            Self::Read { .. } | Self::Syntax { .. } => None,
        }
    }
}

/// Loads a configuration from the file named by `CHATMESH_CONFIG` (if set)
/// and the `CHATMESH_*` overrides in `env`.
pub fn load_from_env<T: DeserializeOwned + Validate>(env: &Env) -> Result<T, ConfigError> {
    let file = env.get("CHATMESH_CONFIG").map(PathBuf::from);
    load(file.as_deref(), env)
}

/// Loads a configuration from an optional TOML file, applies the
/// `CHATMESH_*` overrides from `env`, then validates it.
pub fn load<T: DeserializeOwned + Validate>(
    file: Option<&Path>,
    env: &Env,
) -> Result<T, ConfigError> {
    let mut table = match file {
        Some(path) => read_file(path)?,
        None => Table::new(),
    };
    apply_env(&mut table, env)?;
    let value: T = serde_path_to_error::deserialize(Value::Table(table)).map_err(|err| {
        let field = err.path().to_string();
        let message = err.into_inner().message().to_owned();
        ConfigError::Field {
            field: if field == "." { "<root>".into() } else { field },
            message,
        }
    })?;
    value.validate().map_err(|i| ConfigError::Invalid {
        field: i.field,
        reason: i.reason,
    })?;
    Ok(value)
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<Table>().map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn apply_env(table: &mut Table, env: &Env) -> Result<(), ConfigError> {
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(PREFIX) else {
            continue;
        };
        if RESERVED.contains(&var.as_str())
            || RESERVED_PREFIXES.iter().any(|p| var.starts_with(p))
            || rest.is_empty()
        {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let field = path.join(".");
        let (key, below) = path.split_first().expect("split always yields one item");
        let result = if below.is_empty() {
            table.insert(key.clone(), parse_env_value(raw));
            Ok(())
        } else {
            let node = table
                .entry(key.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            set_path(node, below, parse_env_value(raw), 1)
        };
        result.map_err(|miss| match miss {
            Miss::NotTable(depth) => ConfigError::EnvPath {
                var: var.clone(),
                field: field.clone(),
                parent: path[..depth].join("."),
            },
            Miss::NoElement(depth) => ConfigError::EnvIndex {
                var: var.clone(),
                field: field.clone(),
                array: path[..depth].join("."),
                index: path[depth].clone(),
            },
        })?;
    }
    Ok(())
}

/// Where an override's path left the document, as the number of leading
/// path components that were found.
enum Miss {
    /// The value there is a scalar, so nothing can be set below it.
    NotTable(usize),
    /// The value there is an array without the element named next.
    NoElement(usize),
}

/// Sets `path` below `node` (which sits `depth` components down) to
/// `value`. Missing tables are created; array elements are addressed by
/// index (`databases.0.url`) and must exist, since an array of tables has
/// no sensible default element.
fn set_path(node: &mut Value, path: &[String], value: Value, depth: usize) -> Result<(), Miss> {
    let (key, below) = path.split_first().expect("paths are never empty");
    let slot = match node {
        Value::Table(t) if below.is_empty() => {
            t.insert(key.clone(), value);
            return Ok(());
        }
        Value::Table(t) => t
            .entry(key.clone())
            .or_insert_with(|| Value::Table(Table::new())),
        Value::Array(items) => {
            let item = key.parse::<usize>().ok().and_then(|i| items.get_mut(i));
            let Some(item) = item else {
                return Err(Miss::NoElement(depth));
            };
            if below.is_empty() {
                *item = value;
                return Ok(());
            }
            item
        }
        _ => return Err(Miss::NotTable(depth)),
    };
    set_path(slot, below, value, depth + 1)
}

/// Reads a variable's value as a TOML value when it is one (`42`, `true`,
/// `["a", "b"]`), as a list when it is comma-separated, else as a string.
fn parse_env_value(raw: &str) -> Value {
    let doc = format!("v = {raw}");
    if let Ok(mut t) = doc.parse::<Table>()
        && let Some(v) = t.remove("v")
    {
        return v;
    }
    if raw.contains(',') {
        return Value::Array(
            raw.split(',')
                .map(|s| Value::String(s.trim().to_owned()))
                .collect(),
        );
    }
    Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::Invalid;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        name: String,
        #[serde(default)]
        port: u16,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        nodes: Vec<String>,
        #[serde(default)]
        flag: bool,
    }

    impl Validate for Demo {
        fn validate(&self) -> Result<(), Invalid> {
            if self.port == 1 {
                return Err(Invalid::new("port", "port 1 is reserved"));
            }
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn env_overrides_file_and_nests_with_double_underscore() {
        let f = file("name = \"a\"\nport = 10\n[inner]\nflag = false\n");
        let e = env(&[
            ("CHATMESH_PORT", "20"),
            ("CHATMESH_INNER__FLAG", "true"),
            ("CHATMESH_INNER__NODES", "redis://a:1,redis://b:2"),
            ("CHATMESH_CONFIG", "ignored-here"),
            ("CHATMESH_RUN_WEB", "0"),
            ("CHATMESH_WEB_PORT", "8090"),
            ("UNRELATED", "x"),
        ]);
        let d: Demo = load(Some(f.path()), &e).unwrap();
        assert_eq!(d.name, "a");
        assert_eq!(d.port, 20);
        assert!(d.inner.flag);
        assert_eq!(d.inner.nodes, vec!["redis://a:1", "redis://b:2"]);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_path() {
        let e = env(&[("CHATMESH_NAME", "a"), ("CHATMESH_INNER__FLAGG", "true")]);
        let err = load::<Demo>(None, &e).unwrap_err();
        assert_eq!(err.field(), Some("inner.flagg"), "{err}");
        assert!(err.to_string().contains("flagg"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = env(&[
            ("CHATMESH_NAME", "a"),
            ("CHATMESH_PORT", "not-a-port"),
            ("CHATMESH_INNER__FLAG", "true"),
        ]);
        let err = load::<Demo>(None, &e).unwrap_err();
        assert_eq!(err.field(), Some("port"), "{err}");
    }

    #[test]
    fn missing_field_is_reported() {
        let err = load::<Demo>(None, &env(&[("CHATMESH_INNER__FLAG", "true")])).unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
    }

    #[test]
    fn validation_errors_name_the_field() {
        let e = env(&[
            ("CHATMESH_NAME", "a"),
            ("CHATMESH_PORT", "1"),
            ("CHATMESH_INNER__FLAG", "true"),
        ]);
        let err = load::<Demo>(None, &e).unwrap_err();
        assert_eq!(err.field(), Some("port"));
        assert!(err.to_string().contains("reserved"));
    }

    #[test]
    fn scalar_parent_is_a_clear_error() {
        let e = env(&[("CHATMESH_NAME", "a"), ("CHATMESH_NAME__X", "1")]);
        let err = load::<Demo>(None, &e).unwrap_err();
        assert!(matches!(err, ConfigError::EnvPath { .. }), "{err}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WithList {
        items: Vec<Item>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        url: String,
    }

    impl Validate for WithList {
        fn validate(&self) -> Result<(), Invalid> {
            Ok(())
        }
    }

    #[test]
    fn an_index_reaches_into_an_array() {
        let f = file("tags = [\"a\", \"b\"]\n[[items]]\nurl = \"x\"\n[[items]]\nurl = \"y\"\n");
        let e = env(&[
            ("CHATMESH_ITEMS__1__URL", "postgres://u:secret@h/db"),
            ("CHATMESH_TAGS__0", "z"),
        ]);
        let d: WithList = load(Some(f.path()), &e).unwrap();
        assert_eq!(d.items[0].url, "x");
        assert_eq!(d.items[1].url, "postgres://u:secret@h/db");
        assert_eq!(d.tags, vec!["z", "b"]);
    }

    #[test]
    fn a_missing_element_is_named() {
        let f = file("[[items]]\nurl = \"x\"\n");
        for var in ["CHATMESH_ITEMS__1__URL", "CHATMESH_ITEMS__FIRST__URL"] {
            let err = load::<WithList>(Some(f.path()), &env(&[(var, "y")])).unwrap_err();
            assert!(matches!(err, ConfigError::EnvIndex { .. }), "{err}");
            assert!(err.to_string().contains("`items` has no element"), "{err}");
        }
        let err = load::<WithList>(Some(f.path()), &env(&[("CHATMESH_ITEMS__0__URL__X", "y")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("`items.0.url` is not a table"),
            "{err}"
        );
    }

    #[test]
    fn bad_toml_reports_the_file() {
        let f = file("name = \n");
        let err = load::<Demo>(Some(f.path()), &Env::new()).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }
}

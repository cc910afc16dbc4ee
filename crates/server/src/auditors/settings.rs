//! The configuration sections for auditors at scale: `[audit_http]` (the live tiles API, its
//! type is `audit_http::Settings`), `[publish]`, `[witnessing]` and `[[witness]]`, and the
//! rules they must keep together (checked when the file is loaded).

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use witness::{WitnessEndpoint, WitnessEndpointConfig};

use crate::config::Config;
use crate::error::{Result, ServerError};

/// `[publish]`: continuous publication of the log in the tlog-tiles layout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSection {
    /// Where: `s3://bucket/prefix`, `gs://…`, `az://…`, `file:///dir` or a directory.
    /// Credentials come from the cloud SDKs' environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`),
    /// never from this file.
    pub target: String,
}

/// `[witnessing]`: how the log's checkpoints are offered to the `[[witness]]` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessingSection {
    /// The cosignature store (a JSON file), outside the data directory: a restored backup of
    /// the data directory must not restore the evidence against it too.
    pub store: PathBuf,
    /// The shortest time between two submission rounds, in milliseconds.
    #[serde(default = "default_min_interval_ms")]
    pub min_interval_ms: u64,
    /// How many witnesses must have cosigned a checkpoint before the tiles API serves it and
    /// publication uploads it (and how many the start-up check should hear from); default:
    /// all of them.
    #[serde(default)]
    pub quorum: Option<usize>,
}

fn default_min_interval_ms() -> u64 {
    1_000
}

/// The witnesses with their keys parsed, and the quorum in force (`None` without witnesses).
#[derive(Debug, Clone)]
pub struct Witnessing {
    /// The endpoints, in configuration order.
    pub endpoints: Vec<WitnessEndpoint>,
    /// The cosignature store.
    pub store: PathBuf,
    /// Shortest time between rounds.
    pub min_interval: std::time::Duration,
    /// Cosignatures a checkpoint needs before it is served and published.
    pub quorum: usize,
}

/// The witnessing the configuration asks for, checked: `None` when no `[[witness]]` is listed.
pub fn witnessing(config: &Config) -> Result<Option<Witnessing>> {
    let list = &config.witnesses;
    let Some(section) = &config.witnessing else {
        if list.is_empty() {
            return Ok(None);
        }
        return Err(ServerError::Config(
            "[[witness]] is listed but [witnessing] is missing (it names the cosignature store)"
                .into(),
        ));
    };
    if list.is_empty() {
        return Err(ServerError::Config(
            "[witnessing] is set but no [[witness]] is listed".into(),
        ));
    }
    let endpoints = list
        .iter()
        .enumerate()
        .map(|(i, w)| endpoint(i, w))
        .collect::<Result<Vec<_>>>()?;
    for (i, e) in endpoints.iter().enumerate() {
        if endpoints[..i]
            .iter()
            .any(|o| o.verifier.to_string() == e.verifier.to_string())
        {
            return Err(ServerError::Config(format!(
                "witness[{i}].vkey: the same witness key is listed twice; it would count twice towards the quorum"
            )));
        }
    }
    let quorum = section.quorum.unwrap_or(endpoints.len());
    if quorum == 0 || quorum > endpoints.len() {
        return Err(ServerError::Config(format!(
            "witnessing.quorum must be between 1 and the number of [[witness]] entries ({}), not {quorum}",
            endpoints.len()
        )));
    }
    if section.min_interval_ms == 0 {
        return Err(ServerError::Config(
            "witnessing.min_interval_ms must be at least 1".into(),
        ));
    }
    if inside(&section.store, &config.storage.data_dir) {
        return Err(ServerError::Config(format!(
            "witnessing.store {} is inside storage.data_dir: a restored backup of the data directory would restore the evidence against it too; keep it elsewhere",
            section.store.display()
        )));
    }
    Ok(Some(Witnessing {
        endpoints,
        store: section.store.clone(),
        min_interval: std::time::Duration::from_millis(section.min_interval_ms),
        quorum,
    }))
}

fn endpoint(i: usize, w: &WitnessEndpointConfig) -> Result<WitnessEndpoint> {
    if w.timeout_ms == 0 {
        return Err(ServerError::Config(format!(
            "witness[{i}].timeout_ms must be at least 1"
        )));
    }
    w.to_endpoint()
        .map_err(|e| ServerError::Config(format!("witness[{i}] ({}): {e}", w.url)))
}

/// Whether `path` lies inside `dir`, comparing the paths as written (`..` resolved
/// lexically, relative paths taken from the working directory).
pub fn inside(path: &Path, dir: &Path) -> bool {
    let (p, d) = (normal(path), normal(dir));
    p.starts_with(&d)
}

fn normal(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The rules between the sections, checked when the configuration is loaded.
pub fn check(config: &Config) -> Result<()> {
    if let Some(h) = &config.audit_http
        && h.listen == config.server.listen
        && h.listen.port() != 0
    {
        return Err(ServerError::Config(format!(
            "audit_http.listen {} is server.listen too; the tiles API needs its own port",
            h.listen
        )));
    }
    if let Some(p) = &config.publish {
        if p.target.trim().is_empty() {
            return Err(ServerError::Config("publish.target is empty".into()));
        }
        let local = match p.target.split_once("://") {
            None => Some(PathBuf::from(&p.target)),
            Some(("file", path)) => Some(PathBuf::from(path)),
            Some(_) => None,
        };
        if local.is_some_and(|d| inside(&d, &config.storage.data_dir)) {
            return Err(ServerError::Config(format!(
                "publish.target {} is inside storage.data_dir; publish somewhere a lost data directory does not take with it",
                p.target
            )));
        }
    }
    witnessing(config).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = crate::config::TEST_CONFIG;

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<Config> {
        Config::from_toml_str(
            &format!("{BASE}{extra}"),
            env.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
        )
    }

    fn witness_key() -> String {
        witness::CosignerKey::generate("w1.example/w")
            .expect("key")
            .verifier()
            .to_string()
    }

    #[test]
    fn sections_parse_and_env_overrides_reach_them() {
        let vkey = witness_key();
        let text = format!(
            "[audit_http]\nlisten = \"127.0.0.1:8444\"\naccess = \"open\"\n[publish]\ntarget = \"s3://bucket/audit\"\n[witnessing]\nstore = \"/var/lib/onboard-witness/cosignatures.json\"\n[[witness]]\nurl = \"https://w1.example\"\nvkey = \"{vkey}\"\n"
        );
        let c = load(&text, &[("ONBOARD_AUDIT_HTTP_LISTEN", "127.0.0.1:9444")]).expect("config");
        assert_eq!(c.audit_http.as_ref().map(|h| h.listen.port()), Some(9444));
        assert_eq!(
            c.publish.as_ref().map(|p| p.target.as_str()),
            Some("s3://bucket/audit")
        );
        let w = witnessing(&c).expect("witnessing").expect("some");
        assert_eq!((w.endpoints.len(), w.quorum), (1, 1));
        // [[witness]] as a whole from the environment.
        let env = format!("[{{url=\"https://w2.example\", vkey=\"{vkey}\", timeout_ms=100}}]");
        let c = load(
            &text,
            &[
                ("ONBOARD_WITNESS", env.as_str()),
                ("ONBOARD_WITNESSING_QUORUM", "1"),
            ],
        )
        .expect("config");
        assert_eq!(c.witnesses[0].url, "https://w2.example");
        assert_eq!(c.witnesses[0].timeout_ms, 100);
        assert!(load(&text, &[("ONBOARD_WITNESS", "x")]).is_err());
        assert!(load(&text, &[("ONBOARD_AUDIT_HTTP_LISTN", "x")]).is_err());
    }

    #[test]
    fn the_sections_must_agree() {
        let vkey = witness_key();
        let witness = format!("[[witness]]\nurl = \"https://w1.example\"\nvkey = \"{vkey}\"\n");
        let err = |extra: &str| {
            load(extra, &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            err(&witness).contains("[witnessing] is missing"),
            "{}",
            err(&witness)
        );
        let store_inside = format!("[witnessing]\nstore = \"/var/lib/onboard/c.json\"\n{witness}");
        assert!(err(&store_inside).contains("inside storage.data_dir"));
        let quorum = format!("[witnessing]\nstore = \"/etc/c.json\"\nquorum = 2\n{witness}");
        assert!(err(&quorum).contains("witnessing.quorum must be between 1 and"));
        let twice = format!("[witnessing]\nstore = \"/etc/c.json\"\n{witness}{witness}");
        assert!(err(&twice).contains("listed twice"));
        assert!(err("[witnessing]\nstore = \"/etc/c.json\"\n").contains("no [[witness]]"));
        assert!(
            err("[publish]\ntarget = \"/var/lib/onboard/pub\"\n")
                .contains("inside storage.data_dir")
        );
        assert!(err("[publish]\ntarget = \"file:///var/lib/onboard/pub\"\n").contains("inside"));
        assert!(
            err("[audit_http]\nlisten = \"127.0.0.1:8443\"\naccess = \"open\"\n")
                .contains("its own port")
        );
        assert!(err("[audit_http]\nlisten = \"127.0.0.1:8444\"\n").contains("access"));
    }

    #[test]
    fn inside_is_lexical_and_component_wise() {
        assert!(inside(
            Path::new("/var/lib/onboard/x"),
            Path::new("/var/lib/onboard")
        ));
        assert!(inside(
            Path::new("/var/lib/onboard/../onboard/x"),
            Path::new("/var/lib/onboard/")
        ));
        assert!(!inside(
            Path::new("/var/lib/onboard-witness"),
            Path::new("/var/lib/onboard")
        ));
        assert!(!inside(
            Path::new("/var/lib/x/../y"),
            Path::new("/var/lib/x")
        ));
    }
}

//! `onboard config check FILE`: a good configuration passes; each kind of problem gives its
//! own line and exit 1 (warnings exit 0, or 1 with --strict). Also: the Kubernetes configs in
//! deploy/k8s parse as the server parses them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use audit_log::NoteSigner;
use rcgen::{CertificateParams, KeyPair};
use time::{Duration, OffsetDateTime};

const ORIGIN: &str = "onboard.test/audit";

/// An edit of the good configuration's text.
type Edit = Box<dyn Fn(String) -> String>;

/// A directory with every file a production-like configuration names.
struct Scene {
    /// Holds the files.
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let s = Self { dir };
        std::fs::create_dir(s.path("keys"))?;
        std::fs::create_dir(s.path("data"))?;
        std::fs::set_permissions(s.path("data"), std::fs::Permissions::from_mode(0o700))?;
        let signer = NoteSigner::generate(ORIGIN)?;
        s.write_key("keys/audit.key", signer.to_pkcs8_pem()?.as_bytes())?;
        s.write_key("keys/sealing.key", "ab".repeat(32).as_bytes())?;
        s.write_key("keys/token.key", &[7u8; 32])?;
        s.cert("tls/server", -1, 365)?;
        s.cert("tls/ca", -1, 3650)?;
        Ok(s)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write_key(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        std::fs::write(self.path(rel), bytes)?;
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(0o600))?;
        Ok(())
    }

    /// `REL.pem` and `REL-key.pem`, valid from `from` to `to` days from now.
    fn cert(&self, rel: &str, from: i64, to: i64) -> Result<()> {
        self.cert_at(rel, Duration::days(from), Duration::days(to))
    }

    /// `REL.pem` and `REL-key.pem`, valid from now + `from` to now + `to`.
    fn cert_at(&self, rel: &str, from: Duration, to: Duration) -> Result<()> {
        std::fs::create_dir_all(self.path(rel).parent().context("parent")?)?;
        let mut p = CertificateParams::new(vec!["onboard.test".to_owned()])?;
        p.not_before = OffsetDateTime::now_utc() + from;
        p.not_after = OffsetDateTime::now_utc() + to;
        let key = KeyPair::generate()?;
        std::fs::write(self.path(&format!("{rel}.pem")), p.self_signed(&key)?.pem())?;
        self.write_key(&format!("{rel}-key.pem"), key.serialize_pem().as_bytes())
    }

    /// The good configuration with `edit` applied to its text.
    fn config(&self, edit: impl Fn(String) -> String) -> Result<PathBuf> {
        let p = |r: &str| self.path(r).display().to_string();
        let text = format!(
            r#"[server]
listen = "127.0.0.1:8443"
[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
[storage]
data_dir = "{data}"
sealing_key = "{sealing}"
[audit]
signing_key = "{signing}"
origin = "{ORIGIN}"
[entra]
token_app_client_id = "5b1a2d0e-7c3f-4e8a-9b6d-2f4c8e1a3d57"
[platform]
provider_name = "sp2"
server_name = "Sandbox1"
[invitations]
activation_base_url = "https://onboard.example.net/activate"
token_key = "{token}"
[[auth.callers]]
name = "portal.example.net"
role = "operator"
"#,
            cert = p("tls/server.pem"),
            key = p("tls/server-key.pem"),
            ca = p("tls/ca.pem"),
            data = p("data"),
            sealing = p("keys/sealing.key"),
            signing = p("keys/audit.key"),
            token = p("keys/token.key"),
        );
        let path = self.path("onboard.toml");
        std::fs::write(&path, edit(text))?;
        Ok(path)
    }
}

/// `onboard config check FILE [extra]`: exit code and stdout.
fn check(file: &Path, extra: &[&str]) -> Result<(Option<i32>, String)> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_onboard"));
    c.args(["config", "check"]).arg(file).args(extra);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ONBOARD_")) {
        c.env_remove(k);
    }
    let out = c.output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn a_good_configuration_passes_strictly() -> Result<()> {
    let s = Scene::new()?;
    let (code, out) = check(&s.config(|t| t)?, &["--strict"])?;
    ensure!(
        code == Some(0) && out.ends_with(": 0 error(s), 0 warning(s)\n"),
        "{out}"
    );
    Ok(())
}

#[test]
fn each_kind_of_problem_has_its_line_and_exit_1() -> Result<()> {
    let s = Scene::new()?;
    let replace = |from: &'static str, to: String| move |t: String| t.replace(from, &to);
    let p = |r: &str| s.path(r).display().to_string();

    // (what is broken, how, the line expected)
    let mut cases: Vec<(&str, Edit, String)> = vec![
        (
            "unknown key",
            Box::new(|t: String| t.replace("[storage]", "[storage]\ndata_dri = \"/x\"")),
            "ERROR config: configuration error: unknown field `data_dri`".into(),
        ),
        (
            "missing signing key",
            Box::new(replace("keys/audit.key", "keys/nope.key".into())),
            format!("ERROR audit.signing_key: {}: No such file", p("keys/nope.key")),
        ),
        (
            "http to a real host",
            Box::new(|t: String| {
                t.replace("[entra]", "[entra]\ngraph_url = \"http://graph.microsoft.com\"")
            }),
            "ERROR entra.graph_url: \"http://graph.microsoft.com\" is plain http to a non-test host".into(),
        ),
        (
            "a fragment in the activation URL",
            Box::new(replace("/activate\"", "/activate#x\"".into())),
            "ERROR invitations.activation_base_url: \"https://onboard.example.net/activate#x\" has a fragment".into(),
        ),
        (
            "the placeholder token app",
            Box::new(replace(
                "5b1a2d0e-7c3f-4e8a-9b6d-2f4c8e1a3d57",
                "00000000-0000-0000-0000-000000000000".into(),
            )),
            "ERROR entra.token_app_client_id: the all-zero placeholder".into(),
        ),
        (
            "nobody may call",
            Box::new(|t: String| {
                t.replace("[[auth.callers]]\nname = \"portal.example.net\"\nrole = \"operator\"\n", "")
            }),
            "ERROR auth: no [[auth.callers]] and no [[auth.tokens]]".into(),
        ),
        (
            "a profile that does not exist",
            Box::new(|t: String| t + "[verification]\nrepair_profiles = [\"no-such\"]\n"),
            "ERROR verification.repair_profiles: no profile named \"no-such\"".into(),
        ),
        (
            "a broken profiles file",
            Box::new(|t: String| {
                t.replace("server_name = \"Sandbox1\"", "server_name = \"Sandbox1\"\nprofiles_path = \"/dev/null/x\"")
            }),
            "ERROR platform.profiles_path: /dev/null/x: ".into(),
        ),
        (
            "an https health endpoint without its CA",
            Box::new(|t: String| {
                t + "[[platform.services]]\nid = \"dr-1\"\ngrpc_health = \"https://dr-1.example.net:8443\"\n"
            }),
            "ERROR platform.services[dr-1].grpc_health: an https gRPC health endpoint needs `ca`".into(),
        ),
    ];

    // Files with problems, each next to the good ones.
    s.write_key("keys/short.key", b"0123")?;
    cases.push((
        "a short sealing key",
        Box::new(replace("keys/sealing.key", "keys/short.key".into())),
        format!("ERROR storage.sealing_key: {}: a key is 32 raw bytes or 64 hex digits, this is 4 bytes", p("keys/short.key")),
    ));
    s.write_key("keys/open.key", &[1u8; 32])?;
    std::fs::set_permissions(
        s.path("keys/open.key"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    cases.push((
        "a key readable by everyone",
        Box::new(replace("keys/token.key", "keys/open.key".into())),
        format!(
            "ERROR invitations.token_key: {k} is readable or writable by others (mode 0644); fix: chmod 600 {k}",
            k = p("keys/open.key")
        ),
    ));
    s.write_key("data/inside.key", &[2u8; 32])?;
    cases.push((
        "a key inside the data directory",
        Box::new(replace("keys/sealing.key", "data/inside.key".into())),
        format!(
            "ERROR storage.sealing_key: {} is inside storage.data_dir",
            p("data/inside.key")
        ),
    ));
    let other = NoteSigner::generate("other.example/audit")?;
    s.write_key("keys/other.key", other.to_go_private_key().as_bytes())?;
    cases.push((
        "a signing key named for another log",
        Box::new(replace("keys/audit.key", "keys/other.key".into())),
        format!(
            "ERROR audit.signing_key: {}: the key's name \"other.example/audit\" is not audit.origin \"{ORIGIN}\"",
            p("keys/other.key")
        ),
    ));
    s.cert("tls/expired", -30, -1)?;
    cases.push((
        "an expired certificate",
        Box::new(replace("tls/server.pem", "tls/expired.pem".into())),
        format!(
            "ERROR tls.cert: {}: certificate 0 (CN=rcgen self signed cert) expired on ",
            p("tls/expired.pem")
        ),
    ));
    s.cert("tls/future", 2, 300)?;
    cases.push((
        "a certificate not valid yet",
        Box::new(replace("tls/ca.pem", "tls/future.pem".into())),
        format!("ERROR tls.client_ca: {}: certificate 0 (CN=rcgen self signed cert) is not valid before ", p("tls/future.pem")),
    ));
    std::fs::write(s.path("tls/garbage.pem"), "not a certificate\n")?;
    cases.push((
        "a file without certificates",
        Box::new(replace("tls/ca.pem", "tls/garbage.pem".into())),
        format!(
            "ERROR tls.client_ca: {}: no PEM certificate in the file",
            p("tls/garbage.pem")
        ),
    ));

    for (what, edit, want) in &cases {
        let (code, out) = check(&s.config(edit)?, &[])?;
        ensure!(code == Some(1), "{what}: exit {code:?}\n{out}");
        ensure!(
            out.lines().any(|l| l.starts_with(want.as_str())),
            "{what}: no line starting with\n  {want}\nin\n{out}"
        );
    }
    Ok(())
}

#[test]
fn warnings_pass_unless_strict() -> Result<()> {
    let s = Scene::new()?;
    // 10.5 days: the whole days left are 10 however long the test takes to get there.
    s.cert_at("tls/soon", Duration::days(-300), Duration::hours(252))?;
    std::fs::set_permissions(
        s.path("keys/audit.key"),
        std::fs::Permissions::from_mode(0o640),
    )?;
    let file = s.config(|t| {
        t.replace("tls/server.pem", "tls/soon.pem")
            .replace("tls/server-key.pem", "tls/soon-key.pem")
            .replace("\nsealing_key = ", "\n# sealing_key = ")
    })?;
    let (code, out) = check(&file, &[])?;
    ensure!(code == Some(0), "{out}");
    for want in [
        "WARN  tls.cert: ",
        "WARN  audit.signing_key: ",
        "WARN  storage.sealing_key: unset: ",
    ] {
        ensure!(
            out.lines().any(|l| l.starts_with(want)),
            "{want} not in\n{out}"
        );
    }
    ensure!(
        out.contains("expires on ") && out.contains(", in 10 days; renew it"),
        "{out}"
    );
    ensure!(
        out.contains("(mode 0640)") && out.contains("fix: chmod 600"),
        "{out}"
    );
    ensure!(out.ends_with(": 0 error(s), 3 warning(s)\n"), "{out}");
    let (code, _) = check(&file, &["--strict"])?;
    ensure!(code == Some(1));
    Ok(())
}

#[test]
fn the_kubernetes_configs_parse_as_the_server_parses_them() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in [
        "deploy/k8s/base/onboard.toml",
        "deploy/k8s/overlays/example/onboard.toml",
    ] {
        let text = std::fs::read_to_string(root.join(f))?;
        // The StatefulSet's environment (the metrics listener) must not break parsing.
        let env = [(
            "ONBOARD_TELEMETRY_METRICS_LISTEN".to_owned(),
            "0.0.0.0:9090".to_owned(),
        )];
        let c = onboard_server::Config::from_toml_str(&text, env).with_context(|| f.to_owned())?;
        ensure!(c.server.listen.port() == 8443, "{f}");
        ensure!(
            c.tls.client_ca.is_some() && c.storage.sealing_key.is_some(),
            "{f}"
        );
        for key in [
            Some(&c.audit.signing_key),
            c.storage.sealing_key.as_ref(),
            c.invitations.token_key.as_ref(),
        ] {
            let key = key.context("key path")?;
            ensure!(
                key.starts_with("/etc/onboard/keys/"),
                "{f}: {}",
                key.display()
            );
        }
    }
    Ok(())
}

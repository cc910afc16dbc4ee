//! `onboard config check FILE`: a good configuration passes; each kind of problem gives its
//! own line and exit 1 (warnings exit 0, or 1 with --strict). Also: the Kubernetes configs in
//! deploy/k8s parse as the server parses them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use audit_log::NoteSigner;
use onboard_server::Role;
use testkit::config::{PlatformService, ServerConfigBuilder};
use testkit::keys::ORIGIN;
use testkit::pki::self_signed;
use time::Duration;

/// An edit of the good configuration.
type Edit = Box<dyn Fn(ServerConfigBuilder) -> ServerConfigBuilder>;

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
        let pem = self_signed("onboard.test", from, to)?;
        std::fs::write(self.path(&format!("{rel}.pem")), pem.cert)?;
        self.write_key(&format!("{rel}-key.pem"), pem.key.as_bytes())
    }

    /// The good configuration (production-like: mTLS, key files, one caller) with `edit`
    /// applied.
    fn config(&self, edit: impl Fn(ServerConfigBuilder) -> ServerConfigBuilder) -> Result<PathBuf> {
        let p = |r: &str| self.path(r);
        let good = ServerConfigBuilder::new(self.dir.path())?
            .listen("127.0.0.1:8443".parse()?)
            .tls(
                &p("tls/server.pem"),
                &p("tls/server-key.pem"),
                Some(&p("tls/ca.pem")),
            )
            .sealing_key(Some(&p("keys/sealing.key")))
            .signing_key(&p("keys/audit.key"))
            .token_app("5b1a2d0e-7c3f-4e8a-9b6d-2f4c8e1a3d57")
            .activation_base_url("https://onboard.example.net/activate")
            .token_key(&p("keys/token.key"))
            .without_tokens()
            .caller("portal.example.net", Role::Operator, None);
        edit(good).write(&self.path("onboard.toml"))
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
    let (code, out) = check(&s.config(|b| b)?, &["--strict"])?;
    ensure!(
        code == Some(0) && out.ends_with(": 0 error(s), 0 warning(s)\n"),
        "{out}"
    );
    // The limits in force are shown, defaults included.
    for want in [
        "INFO  limits.max_concurrent_calls = 1000",
        "INFO  limits.token_failures_per_minute = 30",
        "INFO  limits.customer_watch_grace_secs = 600",
        "INFO  server.health_listen = off",
        "INFO  telemetry.metrics_listen = off",
        "INFO  telemetry.log_format = Text",
        "INFO  telemetry.log_level = info (RUST_LOG overrides)",
    ] {
        ensure!(out.lines().any(|l| l == want), "{want} not in\n{out}");
    }
    Ok(())
}

#[test]
fn each_kind_of_problem_has_its_line_and_exit_1() -> Result<()> {
    let s = Scene::new()?;
    let p = |r: &str| s.path(r);
    let path = |r: &str| s.path(r).display().to_string();
    let tls = |cert: &str, ca: &str| {
        let (cert, key, ca) = (p(cert), p("tls/server-key.pem"), p(ca));
        move |b: ServerConfigBuilder| b.tls(&cert, &key, Some(&ca))
    };

    // (what is broken, how, the line expected)
    let mut cases: Vec<(&str, Edit, String)> = vec![
        (
            "unknown key",
            Box::new(|b| b.raw("storage", "data_dri", "/x".into())),
            "ERROR config: configuration error: storage.data_dri (line ".into(),
        ),
        (
            "missing signing key",
            Box::new({
                let k = p("keys/nope.key");
                move |b| b.signing_key(&k)
            }),
            format!("ERROR audit.signing_key: {}: No such file", path("keys/nope.key")),
        ),
        (
            "http to a real host",
            Box::new(|b| b.graph_url("http://graph.microsoft.com")),
            "ERROR entra.graph_url: \"http://graph.microsoft.com\" is plain http to a non-test host".into(),
        ),
        (
            "a fragment in the activation URL",
            Box::new(|b| b.activation_base_url("https://onboard.example.net/activate#x")),
            "ERROR invitations.activation_base_url: \"https://onboard.example.net/activate#x\" has a fragment".into(),
        ),
        (
            "the placeholder token app",
            Box::new(|b| b.token_app("00000000-0000-0000-0000-000000000000")),
            "ERROR entra.token_app_client_id: the all-zero placeholder".into(),
        ),
        (
            "nobody may call",
            Box::new(|b| b.without_callers()),
            "ERROR auth: no [[auth.callers]] and no [[auth.tokens]]".into(),
        ),
        (
            "a profile that does not exist",
            Box::new(|b| b.repair_profiles(&["no-such"])),
            "ERROR verification.repair_profiles: no profile named \"no-such\"".into(),
        ),
        (
            "a broken profiles file",
            Box::new(|b| b.profiles_path(Path::new("/dev/null/x"))),
            "ERROR platform.profiles_path: /dev/null/x: ".into(),
        ),
        (
            "an https health endpoint without its CA",
            Box::new(|b| {
                b.platform_service(PlatformService {
                    timeout_ms: None,
                    ..PlatformService::grpc("dr-1", "https://dr-1.example.net:8443")
                })
            }),
            "ERROR platform.services[dr-1].grpc_health: an https gRPC health endpoint needs `ca`".into(),
        ),
        (
            "the metrics listener on the gRPC port",
            Box::new(|b| b.raw("telemetry", "metrics_listen", "0.0.0.0:8443".into())),
            "ERROR telemetry.metrics_listen: port 8443 is server.listen's too".into(),
        ),
        (
            "the health listener on the gRPC port",
            Box::new(|b| b.raw("server", "health_listen", "0.0.0.0:8443".into())),
            "ERROR server.health_listen: port 8443 is server.listen's too".into(),
        ),
        (
            "the health listener on the metrics port",
            Box::new(|b| {
                b.raw("telemetry", "metrics_listen", "0.0.0.0:9100".into())
                    .raw("server", "health_listen", "127.0.0.1:9100".into())
            }),
            "ERROR server.health_listen: port 9100 is telemetry.metrics_listen's too".into(),
        ),
        (
            "the tiles API on the gRPC port",
            Box::new(|b| b.audit_http_open("0.0.0.0:8443")),
            "ERROR audit_http.listen: port 8443 is server.listen's too".into(),
        ),
        (
            "a log level that is no filter",
            Box::new(|b| b.raw("telemetry", "log_level", "onboard=loud".into())),
            "ERROR telemetry.log_level: \"onboard=loud\" is not a log filter".into(),
        ),
        (
            "an OTLP endpoint that is no http(s) URL",
            Box::new(|b| b.raw("telemetry", "otlp_endpoint", "collector:4317".into())),
            "ERROR telemetry.otlp_endpoint: \"collector:4317\" is not an http(s) URL".into(),
        ),
    ];
    // A build without the `otel` feature cannot export what the key asks for.
    if !cfg!(feature = "otel") {
        cases.push((
            "an OTLP endpoint in a build without the otel feature",
            Box::new(|b| b.raw("telemetry", "otlp_endpoint", "http://collector:4317".into())),
            "ERROR telemetry.otlp_endpoint: this build has no OpenTelemetry export".into(),
        ));
    }

    // Files with problems, each next to the good ones.
    s.write_key("keys/short.key", b"0123")?;
    cases.push((
        "a short sealing key",
        Box::new({
            let k = p("keys/short.key");
            move |b| b.sealing_key(Some(&k))
        }),
        format!("ERROR storage.sealing_key: {}: a key is 32 raw bytes or 64 hex digits, this is 4 bytes", path("keys/short.key")),
    ));
    s.write_key("keys/open.key", &[1u8; 32])?;
    std::fs::set_permissions(
        s.path("keys/open.key"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    cases.push((
        "a key readable by everyone",
        Box::new({
            let k = p("keys/open.key");
            move |b| b.token_key(&k)
        }),
        format!(
            "ERROR invitations.token_key: {k} is readable or writable by others (mode 0644); fix: chmod 600 {k}",
            k = path("keys/open.key")
        ),
    ));
    let open_tls_key = p("keys/tiles-key.pem");
    std::fs::copy(p("tls/server-key.pem"), &open_tls_key)?;
    std::fs::set_permissions(&open_tls_key, std::fs::Permissions::from_mode(0o644))?;
    cases.push((
        "the tiles API's TLS key readable by everyone",
        Box::new({
            let (cert, key) = (p("tls/server.pem"), open_tls_key.clone());
            move |b| {
                b.audit_http_open("127.0.0.1:8444")
                    .raw("audit_http", "tls_cert", cert.display().to_string().into())
                    .raw("audit_http", "tls_key", key.display().to_string().into())
            }
        }),
        format!(
            "ERROR audit_http.tls_key: {k} is readable or writable by others (mode 0644); fix: chmod 600 {k}",
            k = path("keys/tiles-key.pem")
        ),
    ));
    s.write_key("data/inside.key", &[2u8; 32])?;
    cases.push((
        "a key inside the data directory",
        Box::new({
            let k = p("data/inside.key");
            move |b| b.sealing_key(Some(&k))
        }),
        format!(
            "ERROR storage.sealing_key: {} is inside storage.data_dir",
            path("data/inside.key")
        ),
    ));
    let other = NoteSigner::generate("other.example/audit")?;
    s.write_key("keys/other.key", other.to_go_private_key().as_bytes())?;
    cases.push((
        "a signing key named for another log",
        Box::new({
            let k = p("keys/other.key");
            move |b| b.signing_key(&k)
        }),
        format!(
            "ERROR audit.signing_key: {}: the key's name \"other.example/audit\" is not audit.origin \"{ORIGIN}\"",
            path("keys/other.key")
        ),
    ));
    s.cert("tls/expired", -30, -1)?;
    cases.push((
        "an expired certificate",
        Box::new(tls("tls/expired.pem", "tls/ca.pem")),
        format!(
            "ERROR tls.cert: {}: certificate 0 (CN=rcgen self signed cert) expired on ",
            path("tls/expired.pem")
        ),
    ));
    s.cert("tls/future", 2, 300)?;
    cases.push((
        "a certificate not valid yet",
        Box::new(tls("tls/server.pem", "tls/future.pem")),
        format!("ERROR tls.client_ca: {}: certificate 0 (CN=rcgen self signed cert) is not valid before ", path("tls/future.pem")),
    ));
    std::fs::write(s.path("tls/garbage.pem"), "not a certificate\n")?;
    cases.push((
        "a file without certificates",
        Box::new(tls("tls/server.pem", "tls/garbage.pem")),
        format!(
            "ERROR tls.client_ca: {}: no PEM certificate in the file",
            path("tls/garbage.pem")
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
    let file = s.config(|b| {
        b.tls(
            &s.path("tls/soon.pem"),
            &s.path("tls/soon-key.pem"),
            Some(&s.path("tls/ca.pem")),
        )
        .sealing_key(None)
        .token("t0ken", "ci-bot", Role::Auditor)
        // The IPv6 loopback: Microsoft makes no localhost exception for it.
        .activation_base_url("http://[::1]:8080/activate")
    })?;
    let (code, out) = check(&file, &[])?;
    ensure!(code == Some(0), "{out}");
    for want in [
        "WARN  tls.cert: ",
        "WARN  audit.signing_key: ",
        "WARN  storage.sealing_key: unset: ",
        "WARN  auth.tokens: tls.client_ca is set (mTLS), so callers are identified by their client certificate only",
        "WARN  invitations.activation_base_url: not https (nor http on localhost or 127.0.0.1): Microsoft cannot send a browser sign-in back",
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
    ensure!(out.ends_with(": 0 error(s), 5 warning(s)\n"), "{out}");
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

#[test]
fn the_auditor_sections_are_checked() -> Result<()> {
    let s = Scene::new()?;
    let vkey = witness::CosignerKey::generate("w1.example/witness")?
        .verifier()
        .to_string();
    let store = s.path("nowhere/cosignatures.json");
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "a witness over http to a real host",
            Box::new({
                let (vkey, store) = (vkey.clone(), store.clone());
                move |b| {
                    b.witnessing(&store, 1000, 1)
                        .witness("http://witness.example.org", &vkey, 1000)
                }
            }),
            "ERROR witness[0].url: \"http://witness.example.org\" is plain http",
        ),
        (
            "a cosignature store whose directory is missing",
            Box::new({
                let (vkey, store) = (vkey.clone(), store.clone());
                move |b| {
                    b.witnessing(&store, 1000, 1).witness(
                        "https://witness.example.org",
                        &vkey,
                        1000,
                    )
                }
            }),
            "ERROR witnessing.store: ",
        ),
        (
            "bearer access without a token hash",
            Box::new(|b| {
                b.raw("audit_http", "listen", "127.0.0.1:8444".into()).raw(
                    "audit_http",
                    "access",
                    "bearer".into(),
                )
            }),
            "ERROR audit_http: audit_http: access = \"bearer\" needs at least one token_sha256",
        ),
        (
            "a publication target that names no store",
            Box::new(|b| b.publish("ftp://bucket/audit")),
            "ERROR publish.target: ",
        ),
        (
            "witnesses without [witnessing]",
            Box::new({
                let vkey = vkey.clone();
                move |b| b.witness("https://witness.example.org", &vkey, 1000)
            }),
            "ERROR config: configuration error: [[witness]] is listed but [witnessing] is missing",
        ),
    ];
    for (what, edit, want) in &cases {
        let (code, out) = check(&s.config(edit)?, &[])?;
        ensure!(code == Some(1), "{what}: exit {code:?}\n{out}");
        ensure!(
            out.lines().any(|l| l.starts_with(want)),
            "{what}: no line starting with\n  {want}\nin\n{out}"
        );
    }
    let (code, out) = check(&s.config(|b| b.audit_http_open("127.0.0.1:8444"))?, &[])?;
    ensure!(
        code == Some(0) && out.contains("WARN  audit_http.access: open: "),
        "{out}"
    );
    Ok(())
}

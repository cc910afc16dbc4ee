//! `onboard demo`: until the onboarding service exists, an audit-log demo. It records the
//! entries a batch of concurrent onboardings would write (intent and outcome of every Entra
//! change), exports the log as tlog-tiles, writes the verifier key, and verifies the export.
//!
//! Contract kept by later versions: the export is in DIR/export, the verifier key (one line) in
//! DIR/audit.vkey, the data directory is DIR/data.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use audit_log::{AuditLog, LogConfig, NoteSigner};
use serde_json::{Map, Value, json};

use crate::audit_cli;

/// The origin the demo log uses.
const ORIGIN: &str = "onboard.demo.invalid/audit";
/// Onboardings the demo records.
const ONBOARDINGS: u32 = 24;

/// Entra's Microsoft Graph application permissions the default profile grants.
const GRAPH_PERMISSIONS: [&str; 5] = [
    "Organization.Read.All",
    "User.Read.All",
    "Domain.Read.All",
    "AppCatalog.ReadWrite.All",
    "TeamSettings.ReadWrite.All",
];
/// Directory roles the default profile assigns.
const DIRECTORY_ROLES: [&str; 2] = ["Teams Administrator", "Skype for Business Administrator"];

/// `onboard demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to put everything (default: a new temporary directory, kept and printed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Records one onboarding's entries in order, as the service would.
async fn onboarding(log: AuditLog, n: u32) -> anyhow::Result<u64> {
    let tenant = format!("{:08x}-4d2c-4f1a-9b7e-{:012x}", 0x5eed_0000u32 + n, n);
    let onboarding_id = format!("onb-{n:04}");
    let actor = "spiffe://platform.demo.invalid/portal";
    let app_name = format!("LP-Demo{n:02}");
    let base = |action: &str, phase: &str, target: Value| {
        obj(json!({
            "actor": actor,
            "action": action,
            "phase": phase,
            "tenant_id": tenant,
            "onboarding_id": onboarding_id,
            "service_id": format!("dr-service-{n}"),
            "target": target,
            "correlation_id": format!("{n:08x}-0000-4000-8000-000000000000"),
        }))
    };
    let mut count = 0u64;
    let mut record = |fields: Map<String, Value>| {
        let log = log.clone();
        count += 1;
        async move { log.append(&fields).await }
    };
    record(base(
        "invitation.create",
        "succeeded",
        json!({"type": "invitation", "id": onboarding_id}),
    ))
    .await?;
    record(base(
        "signin.device_code",
        "succeeded",
        json!({"type": "user", "id": format!("admin@tenant{n}.onmicrosoft.com")}),
    ))
    .await?;
    let mut steps: Vec<(String, Value)> = vec![
        (
            "app_registration.create".into(),
            json!({"type": "application", "display_name": app_name}),
        ),
        (
            "service_principal.create".into(),
            json!({"type": "servicePrincipal", "display_name": app_name}),
        ),
        (
            "client_secret.add".into(),
            json!({"type": "passwordCredential", "id": format!("{n:08x}-aaaa-4bbb-8ccc-dddddddddddd"), "hint": "Q~x", "end_date_time": "2027-05-26T00:00:00Z"}),
        ),
    ];
    for p in GRAPH_PERMISSIONS {
        steps.push((
            "app_role_assignment.create".into(),
            json!({"type": "appRoleAssignment", "display_name": p}),
        ));
    }
    for r in DIRECTORY_ROLES {
        steps.push((
            "directory_role_assignment.create".into(),
            json!({"type": "unifiedRoleAssignment", "display_name": r}),
        ));
    }
    steps.push((
        "enterprise_app.delete".into(),
        json!({"type": "servicePrincipal", "display_name": "Sandbox1-sp2-token"}),
    ));
    steps.push((
        "authentication.check".into(),
        json!({"type": "application", "display_name": app_name}),
    ));
    for (action, target) in steps {
        record(base(&action, "intent", target.clone())).await?;
        let mut done = base(&action, "succeeded", target);
        let request_id = format!("{n:08x}-1111-4222-8333-{:012x}", action.len());
        done.insert("graph_request_id".into(), json!(request_id));
        record(done).await?;
    }
    Ok(count)
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("onboard-demo-")
            .tempdir()?
            .keep(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = dir.join("data");
    let export = dir.join("export");
    let key_path = dir.join("audit.key");
    let vkey_path = dir.join("audit.vkey");
    println!("Onboard demo in {}", dir.display());

    // Keep the key across runs with the same --dir; the key never lives in the data directory.
    let signer = if key_path.exists() {
        audit_cli::read_key(&key_path, ORIGIN)?
    } else {
        let signer = NoteSigner::generate(ORIGIN)?;
        audit_cli::write_private(&key_path, signer.to_go_private_key().as_bytes())?;
        signer
    };
    let vkey = signer.verifier().to_string();
    std::fs::write(&vkey_path, format!("{vkey}\n"))?;

    let log = AuditLog::open(LogConfig::new(&data, ORIGIN), signer)?;
    let start = Instant::now();
    println!("Recording {ONBOARDINGS} concurrent onboardings in the audit log ...");
    let tasks: Vec<_> = (0..ONBOARDINGS)
        .map(|n| tokio::spawn(onboarding(log.clone(), n)))
        .collect();
    let mut entries = 0;
    for t in tasks {
        entries += t.await??;
    }
    let cp = log.checkpoint();
    println!(
        "  {entries} entries durable and signed in {:.0} ms; log size {}",
        start.elapsed().as_secs_f64() * 1000.0,
        cp.checkpoint.size
    );
    println!("Latest checkpoint (C2SP signed note):");
    for line in cp.note.lines() {
        println!("  | {line}");
    }
    let summary = log.export_tiles(&export)?;
    let proof_path = dir.join("entry-0.tlog-proof");
    std::fs::write(&proof_path, log.tlog_proof(0)?.to_text())?;
    log.close();
    println!(
        "Exported {} entries to {} (C2SP tlog-tiles); proof of entry 0 in {}",
        summary.size,
        export.display(),
        proof_path.display()
    );
    println!("Verifier key ({}): {vkey}", vkey_path.display());
    println!();
    println!(
        "$ onboard audit verify {} --vkey {}",
        export.display(),
        vkey_path.display()
    );
    if !audit_cli::verify(&export, &[vkey_path.display().to_string()], None)? {
        anyhow::bail!("the demo's own export did not verify");
    }
    Ok(())
}

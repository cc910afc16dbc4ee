//! `onboard ctl secrets add|rotate --seal-to KEY`: the new secret is shown or written sealed to
//! the platform's X25519 key, so the operator who runs the command never holds it; it opens
//! with pyhpke (an HPKE implementation apart from the server's) to a secret that signs in as the
//! app. A key that is no X25519 public key is refused before anything is asked of the server.

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use onboard_proto::v1 as pb;
use secrecy::SecretString;
use serde_json::Value;

use testkit::sealed::Keys;

use crate::{DayTwo, ROTATE_DR_1, refused, succeeded};

/// The sealed secret `onboard ctl` printed or wrote (`{"key_id", "enc", "ciphertext"}`),
/// opened with `keys`: the key id and the secret.
fn open(keys: &Keys, sealed_json: &str) -> Result<(String, String)> {
    let v: Value = serde_json::from_str(sealed_json.trim())?;
    let field = |k: &str| v[k].as_str().map(str::to_owned).context(k.to_owned());
    let sealed = pb::SealedSecret {
        enc: STANDARD.decode(field("enc")?)?,
        ciphertext: STANDARD.decode(field("ciphertext")?)?,
    };
    let key_id = field("key_id")?;
    let secret = keys
        .open(Some(&sealed), &key_id)?
        .context("does not open")?;
    Ok((key_id, secret))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_to_shows_and_writes_secrets_only_the_platform_opens() -> Result<()> {
    let d = DayTwo::start("Ctl-Sealed").await?;
    let (sim, files, done) = (&d.sim, &d.files, &d.done);
    let entra = testkit::sim::entra_client(sim)?;
    let tenant = sim.info().tenant_id;
    let signs_in = |secret: String| {
        let (entra, tenant, client) = (&entra, &tenant, &done.client_id);
        async move {
            testkit::sim::authenticates(entra, tenant, client, &SecretString::from(secret)).await
        }
    };
    let keys = Keys::new()?;

    // add, the key in hex: the sealed secret on standard output, no value in clear.
    let hex_key = hex::encode(&keys.public);
    let r = d
        .ctl(&[
            "secrets",
            "add",
            "--service-id",
            "dr-sealed",
            "--seal-to",
            &hex_key,
        ])
        .await?;
    let shown = "sealed secret (only the --seal-to key's holder opens it): ";
    succeeded(&r, shown)?;
    ensure!(!r.stdout.contains("secret value"), "{r}");
    let line = r.stdout.lines().find_map(|l| l.strip_prefix(shown));
    let (key_id, secret) = open(&keys, line.context("no sealed line")?)?;
    ensure!(r.stdout.contains(&format!("new secret {key_id} ")), "{r}");
    ensure!(signs_in(secret.clone()).await, "not the app's secret");
    ensure!(!r.stdout.contains(&secret) && !r.stderr.contains(&secret));

    // rotate, the key in base64, to a file: the file holds the sealed secret.
    let out = files.dir.path().join("rotated.sealed");
    let b64_key = STANDARD.encode(&keys.public);
    let sealed_to_file = [
        "--seal-to",
        &b64_key,
        "--secret-out",
        out.to_str().context("path")?,
    ];
    let rotate = ROTATE_DR_1;
    let r = d.ctl(&[&rotate[..], &sealed_to_file].concat()).await?;
    succeeded(&r, "sealed secret written to")?;
    let (key_id, secret) = open(&keys, &std::fs::read_to_string(&out)?)?;
    ensure!(r.stdout.contains(&format!("new secret {key_id} ")), "{r}");
    ensure!(signs_in(secret.clone()).await, "not the app's new secret");
    ensure!(!r.stdout.contains(&secret));

    // Not a key: refused by the command line, naming the rule, before any call.
    for (bad, says) in [
        ("not-a-key!", "neither 64 hex digits nor base64"),
        (STANDARD.encode([7u8; 16]).as_str(), "32 bytes, this is 16"),
    ] {
        let r = d
            .ctl(&["secrets", "add", "--service-id", "dr-bad", "--seal-to", bad])
            .await?;
        refused(&r, 2, says)?;
    }
    let listed = d.ctl(&["secrets", "list"]).await?;
    ensure!(!listed.stdout.contains("dr-bad"), "{listed}");
    Ok(())
}

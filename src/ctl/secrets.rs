//! `onboard ctl secrets list|add|rotate|revoke|expiring`.

use std::path::PathBuf;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use onboard_proto::v1 as pb;
use onboard_proto::v1::credentials_client::CredentialsClient;

use super::exit::{CtlError, Exit};
use super::output::{self, Output, ts};
use super::{AuthChannel, RegArgs, call, next_message};

/// The stages RotateSecret streams, in order.
const ROTATION_STAGES: [&str; 4] = ["add", "validate", "hand_over", "remove_old"];

/// `onboard ctl secrets …`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Lists a registration's secrets (metadata only).
    List {
        /// The registration.
        #[command(flatten)]
        reg: RegArgs,
    },
    /// Adds a client secret for one service; the value is shown once.
    Add {
        /// The registration.
        #[command(flatten)]
        reg: RegArgs,
        /// The service that will use it.
        #[arg(long)]
        service_id: String,
        /// Validity, e.g. `180d` (default: the server's `[credentials] secret_lifetime_days`).
        #[arg(long, value_parser = output::parse_duration)]
        valid_for: Option<prost_types::Duration>,
        /// Write the value to this file (mode 0600) instead of standard output.
        #[arg(long)]
        secret_out: Option<PathBuf>,
        /// Seal the value to this X25519 public key (hex or base64): only the key's holder
        /// can open what is shown or written.
        #[arg(long, value_parser = output::parse_seal_to)]
        seal_to: Option<pb::SealTo>,
    },
    /// Rotates a service's secret with overlap, showing each stage. Returns once the new
    /// secret is handed over (the server removes the old one after the overlap on its own),
    /// or with --wait once the old one is removed.
    Rotate {
        /// The registration.
        #[command(flatten)]
        reg: RegArgs,
        /// The service whose secret is rotated.
        #[arg(long)]
        service_id: String,
        /// How long the old secret stays valid after the hand-over, e.g. `24h`.
        #[arg(long, value_parser = output::parse_duration, default_value = "24h")]
        overlap: prost_types::Duration,
        /// Write the new value to this file (mode 0600) instead of standard output.
        #[arg(long)]
        secret_out: Option<PathBuf>,
        /// Seal the new value to this X25519 public key (hex or base64): only the key's holder
        /// can open what is shown or written.
        #[arg(long, value_parser = output::parse_seal_to)]
        seal_to: Option<pb::SealTo>,
        /// Follow the rotation through the overlap until the old secret is removed.
        #[arg(long)]
        wait: bool,
    },
    /// Removes a secret (never a service's current one).
    Revoke {
        /// The registration.
        #[command(flatten)]
        reg: RegArgs,
        /// The secret's key id.
        #[arg(long)]
        key_id: String,
    },
    /// Current secrets of every registration expiring within a horizon.
    Expiring {
        /// Days ahead (0: the server's `[credentials] expiry_horizon_days`).
        #[arg(long, default_value_t = 0)]
        horizon_days: u32,
    },
}

/// Runs one secrets command.
pub async fn run(cmd: SecretsCommand, ch: AuthChannel, out: Output) -> Result<Exit, CtlError> {
    let mut c = CredentialsClient::new(ch);
    match cmd {
        SecretsCommand::List { reg } => {
            let r = call(
                "ListSecrets",
                c.list_secrets(pb::ListSecretsRequest {
                    registration: Some(reg.to_pb()),
                }),
            )
            .await?;
            let header = [
                "KEY ID",
                "SERVICE",
                "HINT",
                "CURRENT",
                "START",
                "END",
                "DAYS LEFT",
            ];
            output::print_list(out, &r, &header, &r.secrets, |s| {
                vec![
                    s.key_id.clone(),
                    s.service_id.clone(),
                    s.hint.clone(),
                    if s.current { "yes" } else { "no" }.into(),
                    ts(&s.start),
                    ts(&s.end),
                    days_left(s),
                ]
            })
        }
        SecretsCommand::Add {
            reg,
            service_id,
            valid_for,
            secret_out,
            seal_to,
        } => {
            // Opened first: a path that cannot be written is refused before a secret is made.
            let mut file = secret_out
                .as_deref()
                .map(output::PrivateOut::open)
                .transpose()?;
            let mut r = call(
                "AddServiceSecret",
                c.add_service_secret(pb::AddServiceSecretRequest {
                    registration: Some(reg.to_pb()),
                    service_id,
                    valid_for,
                    seal_to,
                }),
            )
            .await?;
            hand_out(&mut r, &mut file, out)?;
            if out.is_json() {
                output::print_json(&r)?;
            }
            Ok(Exit::Ok)
        }
        SecretsCommand::Rotate {
            reg,
            service_id,
            overlap,
            secret_out,
            seal_to,
            wait,
        } => {
            let mut file = secret_out
                .as_deref()
                .map(output::PrivateOut::open)
                .transpose()?;
            let mut stream = call(
                "RotateSecret",
                c.rotate_secret(pb::RotateSecretRequest {
                    registration: Some(reg.to_pb()),
                    service_id: service_id.clone(),
                    overlap: Some(overlap),
                    seal_to,
                }),
            )
            .await?;
            let bar = if out.is_json() {
                ProgressBar::with_draw_target(Some(8), ProgressDrawTarget::hidden())
            } else {
                ProgressBar::new(8)
            };
            bar.set_style(
                ProgressStyle::with_template("{bar:24} {pos}/{len} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            let mut finished = false;
            loop {
                let Some(mut e) = next_message(&mut stream, "RotateSecret").await? else {
                    break;
                };
                let stage_no = ROTATION_STAGES
                    .iter()
                    .position(|s| *s == e.stage)
                    .map_or(0, |i| i as u64);
                bar.set_position(stage_no * 2 + u64::from(e.done));
                bar.set_message(format!("{} {}", e.stage, if e.done { "done" } else { "…" }));
                if let Some(ns) = e.new_secret.as_mut() {
                    bar.suspend(|| hand_out(ns, &mut file, out))?;
                }
                if out.is_json() {
                    output::print_json_line(&e)?;
                } else {
                    let audit = if e.audit_seq > 0 {
                        format!(" (audit entry {})", e.audit_seq)
                    } else {
                        String::new()
                    };
                    let state = if e.done { "done" } else { "started" };
                    bar.suspend(|| println!("{:10} {state}{audit}", e.stage));
                }
                if e.stage == "hand_over" && e.done {
                    let left = humantime::format_duration(std::time::Duration::from_secs(
                        overlap.seconds.unsigned_abs(),
                    ));
                    if !wait {
                        if !out.is_json() {
                            bar.suspend(|| {
                                println!(
                                    "handed over; the server removes the old secret after the overlap ({left}) on its own"
                                )
                            });
                        }
                        finished = true;
                        break;
                    }
                    bar.set_message(format!("overlap: the old secret stays valid for {left}"));
                }
                if e.stage == "remove_old" && e.done {
                    finished = true;
                }
            }
            bar.finish_and_clear();
            if finished {
                Ok(Exit::Ok)
            } else {
                Err(CtlError::failed(
                    "RotateSecret: the stream ended before the rotation did; the server resumes it on its own (see `onboard ctl secrets list`)",
                ))
            }
        }
        SecretsCommand::Revoke { reg, key_id } => {
            let r = call(
                "RevokeSecret",
                c.revoke_secret(pb::RevokeSecretRequest {
                    registration: Some(reg.to_pb()),
                    key_id: key_id.clone(),
                }),
            )
            .await?;
            if out.is_json() {
                output::print_json(&r)?;
            } else {
                println!("revoked secret {key_id} (audit entry {})", r.audit_seq);
            }
            Ok(Exit::Ok)
        }
        SecretsCommand::Expiring { horizon_days } => {
            let r = call(
                "ListExpiring",
                c.list_expiring(pb::ListExpiringRequest { horizon_days }),
            )
            .await?;
            if out.is_json() {
                output::print_json(&r)?;
                return Ok(Exit::Ok);
            }
            println!("current secrets expiring within {} days:", r.horizon_days);
            let mut t =
                output::table(&["TENANT", "CLIENT", "SERVICE", "KEY ID", "END", "DAYS LEFT"]);
            for e in &r.secrets {
                let reg = e.registration.clone().unwrap_or_default();
                let s = e.secret.clone().unwrap_or_default();
                let left = days_left(&s);
                t.add_row(vec![
                    reg.tenant_id,
                    reg.client_id,
                    s.service_id,
                    s.key_id,
                    ts(&s.end),
                    left,
                ]);
            }
            output::print_table(&t);
            Ok(Exit::Ok)
        }
    }
}

/// Shows a new secret once: to the file (and then blanked in the answer that is printed),
/// else on standard output in table mode (JSON mode prints it inside the answer). A sealed
/// secret (`--seal-to`) is shown or written as [`output::sealed_json`].
fn hand_out(
    s: &mut pb::NewSecret,
    file: &mut Option<output::PrivateOut>,
    out: Output,
) -> anyhow::Result<()> {
    let info = s.info.clone().unwrap_or_default();
    let (what, value) = match &s.sealed {
        Some(sealed) => ("sealed secret", output::sealed_json(&info.key_id, sealed)),
        None => ("secret value", s.secret.clone()),
    };
    let written = match file.take() {
        Some(f) => {
            let path = f.path().to_owned();
            f.write(value.as_bytes())?;
            s.secret.clear();
            s.sealed = None;
            Some(path)
        }
        None => None,
    };
    if out.is_json() {
        return Ok(());
    }
    println!(
        "new secret {} for {} (hint {}), expires {} (audit entries: made {}, handed to you {})",
        info.key_id,
        info.service_id,
        info.hint,
        ts(&info.end),
        s.audit_seq,
        s.hand_over_audit_seq
    );
    match written {
        Some(path) => println!("{what} written to {}", path.display()),
        None if s.sealed.is_some() => {
            println!("sealed secret (only the --seal-to key's holder opens it): {value}")
        }
        None => println!("secret value (shown once): {value}"),
    }
    Ok(())
}

/// DAYS LEFT for people: `-` when the expiry is unknown (`end` unset, where the field holds
/// INT64_MAX), as END shows it.
fn days_left(s: &pb::SecretInfo) -> String {
    match s.end {
        Some(_) => s.days_until_expiry.to_string(),
        None => "-".into(),
    }
}

//! Human output: tables (comfy-table, so non-ASCII customer names still line up), times,
//! spinners and the choice between tables and JSON.

use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use comfy_table::{CellAlignment, Table, presets};
use indicatif::{ProgressBar, ProgressStyle};
use onboard_proto::v1 as pb;

use super::exit::{CtlError, Exit};
use super::json::{self, ProtoName};

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Tables and lines for people.
    Table,
    /// Protobuf's canonical JSON: one document per answer, one line per streamed message.
    Json,
}

impl Output {
    /// True for `--output json`.
    pub fn is_json(self) -> bool {
        self == Output::Json
    }
}

/// A table with a header row and no borders, columns separated by two spaces.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_string()));
    for col in t.column_iter_mut() {
        col.set_padding((0, 2));
        col.set_cell_alignment(CellAlignment::Left);
    }
    t
}

/// Prints a table without trailing spaces.
pub fn print_table(t: &Table) {
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

/// Prints a whole answer as pretty JSON.
pub fn print_json<M: ProtoName>(msg: &M) -> anyhow::Result<()> {
    println!("{}", json::pretty(msg)?);
    Ok(())
}

/// Prints an answer: `msg` whole as JSON, or for people as `human` prints it.
pub fn print_answer<M: ProtoName>(
    out: Output,
    msg: &M,
    human: impl FnOnce(&M),
) -> Result<Exit, CtlError> {
    if out.is_json() {
        print_json(msg)?;
    } else {
        human(msg);
    }
    Ok(Exit::Ok)
}

/// Prints `field: value` lines, the values lined up after the longest field name.
pub fn print_fields(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{:width$} {v}", format!("{k}:"));
    }
}

/// Prints a List answer: `msg` whole as JSON, or a table with `header` and one row per item
/// of `items` (`row` makes a row's cells).
pub fn print_list<M: ProtoName, T>(
    out: Output,
    msg: &M,
    header: &[&str],
    items: &[T],
    row: impl Fn(&T) -> Vec<String>,
) -> Result<Exit, CtlError> {
    print_answer(out, msg, |_| {
        let mut t = table(header);
        for item in items {
            t.add_row(row(item));
        }
        print_table(&t);
    })
}

/// Prints one streamed message as a JSON line (flushed, so a pipe sees it at once).
pub fn print_json_line<M: ProtoName>(msg: &M) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", json::line(msg)?)?;
    out.flush()?;
    Ok(())
}

/// A timestamp as RFC 3339 (UTC), `-` when unset.
pub fn ts(t: &Option<prost_types::Timestamp>) -> String {
    rfc3339(t).unwrap_or_else(|| "-".into())
}

/// A timestamp as RFC 3339 (UTC); none when unset (or out of range).
pub fn rfc3339(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

/// A protobuf duration for people (`2s`, `1h 30m`).
pub fn dur(d: &Option<prost_types::Duration>) -> String {
    match d {
        Some(d) if d.seconds >= 0 && d.nanos >= 0 => {
            let d = Duration::new(d.seconds.unsigned_abs(), d.nanos.unsigned_abs());
            // Whole milliseconds are enough for people.
            let d = Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX));
            humantime::format_duration(d).to_string()
        }
        _ => "-".into(),
    }
}

/// `-` for empty strings in tables.
pub fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// A spinner on standard error while `fut` runs (drawn only on a terminal).
pub async fn spin<F: Future>(message: &str, fut: F) -> F::Output {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(message.to_owned());
    pb.enable_steady_tick(Duration::from_millis(120));
    let out = fut.await;
    pb.finish_and_clear();
    out
}

/// Creates (or truncates) `path` readable and writable by its owner only (0600), also when
/// it existed with another mode: what the CLI writes may hold a secret or the server's records.
pub fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let f = open_private(path)?;
    f.set_len(0)
        .with_context(|| format!("truncating {}", path.display()))?;
    Ok(f)
}

/// `path` opened for writing, 0600 whatever mode it had, not truncated.
fn open_private(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::PermissionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private (0600)", path.display()))?;
    Ok(f)
}

/// A file that will hold what a call makes once (a secret, an invitation's email): opened
/// before the call, so that a path that cannot be written is refused before anything is made
/// (a secret made and then not written is lost: Onboard shows it once); written when the
/// answer is there. Its old content stays until then; a file it created and never wrote is
/// removed again.
pub struct PrivateOut {
    /// Where, for messages.
    path: std::path::PathBuf,
    /// Open for writing, 0600.
    file: std::fs::File,
    /// Created by [`PrivateOut::open`] and not written yet: removed on drop.
    remove_unwritten: bool,
}

impl PrivateOut {
    /// Opens (or creates) `path`, 0600.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let existed = path.exists();
        Ok(Self {
            path: path.to_owned(),
            file: open_private(path)?,
            remove_unwritten: !existed,
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file's content with `bytes`, durably.
    pub fn write(mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let what = || format!("writing {}", self.path.display());
        self.file.set_len(0).with_context(what)?;
        self.file.write_all(bytes).with_context(what)?;
        self.file.sync_all().with_context(what)?;
        self.remove_unwritten = false;
        Ok(())
    }
}

impl Drop for PrivateOut {
    fn drop(&mut self) {
        if self.remove_unwritten {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Parses an X25519 public key for sealed delivery (`--seal-to`): 32 bytes as 64 hex digits or
/// in base64 (standard, padded or not, as WireGuard and most tools print X25519 keys).
pub fn parse_seal_to(s: &str) -> Result<pb::SealTo, String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let s = s.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(s).map_err(|e| e.to_string())?
    } else {
        STANDARD
            .decode(s)
            .or_else(|_| STANDARD_NO_PAD.decode(s))
            .map_err(|_| "neither 64 hex digits nor base64".to_owned())?
    };
    if bytes.len() != 32 {
        return Err(format!(
            "an X25519 public key is 32 bytes, this is {}",
            bytes.len()
        ));
    }
    Ok(pb::SealTo {
        x25519_public_key: bytes,
    })
}

/// A sealed secret as `onboard ctl` writes it for its recipient: the key id (the HPKE `aad`)
/// and `enc` and `ciphertext` in base64, as in `delivery.proto`'s `SealedSecret`.
pub fn sealed_json(key_id: &str, sealed: &pb::SealedSecret) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    serde_json::json!({
        "key_id": key_id,
        "enc": b64(&sealed.enc),
        "ciphertext": b64(&sealed.ciphertext),
    })
    .to_string()
}

/// Parses `7d`, `24h`, `90m`, `3600s` (humantime) into a protobuf duration.
pub fn parse_duration(s: &str) -> Result<prost_types::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).map_err(|_| format!("{s:?} is too long"))?,
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_by_display_width_without_trailing_spaces() {
        let mut t = table(&["ID", "CUSTOMER", "STATE"]);
        t.add_row(vec!["1", "Zürich AG", "pending"]);
        t.add_row(vec!["22", "Contoso", "used"]);
        let lines: Vec<String> = t.lines().map(|l| l.trim_end().to_owned()).collect();
        assert_eq!(lines[0], "ID  CUSTOMER   STATE");
        assert_eq!(lines[1], "1   Zürich AG  pending");
        assert_eq!(lines[2], "22  Contoso    used");
    }

    #[test]
    fn seal_to_keys_parse_from_hex_and_base64_and_nothing_else() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
        let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37)).collect();
        for text in [
            hex::encode(&key),
            hex::encode_upper(&key),
            STANDARD.encode(&key),
            format!(" {}\n", STANDARD_NO_PAD.encode(&key)),
        ] {
            let parsed = parse_seal_to(&text).expect(&text);
            assert_eq!(parsed.x25519_public_key, key, "{text}");
        }
        assert!(parse_seal_to(&hex::encode(&key[..31])).is_err());
        assert!(parse_seal_to(&STANDARD.encode([0u8; 33])).is_err());
        assert!(parse_seal_to("").is_err());
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("7d").expect("7d").seconds, 7 * 86_400);
        assert_eq!(parse_duration("90m").expect("90m").seconds, 5_400);
        assert!(parse_duration("soon").is_err());
        let d = Some(prost_types::Duration {
            seconds: 2,
            nanos: 500_000_000,
        });
        assert_eq!(dur(&d), "2s 500ms");
        assert_eq!(ts(&None), "-");
    }
}

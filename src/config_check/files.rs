//! Files the configuration names: keys (readable, private, well-formed, outside the data
//! directory), certificates (parse, in their validity period, not expiring soon) and the
//! profiles file.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use audit_log::NoteSigner;
use onboard_core::ProfileSet;
use onboard_server::Config;
use x509_parser::pem::Pem;
use zeroize::Zeroizing;

use super::Findings;

/// Seconds per day.
const DAY: i64 = 86_400;

/// Every file check.
pub fn check_files(config: &Config, warn_days: u32, now: i64, f: &mut Findings) {
    let data_dir = &config.storage.data_dir;
    check_data_dir(data_dir, f);

    let key = &config.audit.signing_key;
    if let Some(text) = read_key(key, "audit.signing_key", data_dir, f) {
        match std::str::from_utf8(&text)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                NoteSigner::from_key_file_text(t, &config.audit.origin).map_err(|e| e.to_string())
            }) {
            Err(e) => f.error(
                "audit.signing_key",
                format!("{}: not an Ed25519 signing key: {e}", key.display()),
            ),
            Ok(s) if s.name() != config.audit.origin => f.error(
                "audit.signing_key",
                format!(
                    "{}: the key's name {:?} is not audit.origin {:?}; checkpoints would not verify",
                    key.display(),
                    s.name(),
                    config.audit.origin
                ),
            ),
            Ok(_) => {}
        }
    }

    for (name, path, what) in [
        (
            "storage.sealing_key",
            &config.storage.sealing_key,
            "client secrets and admin tokens are sealed with a key generated into the state store, so a copy of the data directory can open them",
        ),
        (
            "invitations.token_key",
            &config.invitations.token_key,
            "invitation tokens are MACed with a key generated into the state store, so a copy of the data directory can forge them",
        ),
    ] {
        match path {
            None => f.warn(
                name,
                format!(
                    "unset: {what}; set it to a key file outside the data directory in production (`onboard keys export` writes the key a server already generated to one)"
                ),
            ),
            Some(p) => {
                if let Some(bytes) = read_key(p, name, data_dir, f)
                    && onboard_core::key_file::parse(&bytes).is_none()
                {
                    f.error(
                        name,
                        format!(
                            "{}: a key is 32 raw bytes or 64 hex digits, this is {} bytes",
                            p.display(),
                            bytes.len()
                        ),
                    );
                }
            }
        }
    }

    let tiles_api_key = config.audit_http.as_ref().and_then(|h| h.tls_key.as_ref());
    for (k, name) in [
        (config.tls.key.as_ref(), "tls.key"),
        (tiles_api_key, "audit_http.tls_key"),
    ] {
        if let Some(k) = k
            && let Some(bytes) = read_key(k, name, data_dir, f)
        {
            let has_key = Pem::iter_from_buffer(&bytes)
                .filter_map(Result::ok)
                .any(|p| p.label.ends_with("PRIVATE KEY"));
            if !has_key {
                f.error(name, format!("{}: no PEM private key block", k.display()));
            }
        }
    }
    let warn = i64::from(warn_days) * DAY;
    if let Some(c) = &config.tls.cert {
        check_certs(c, "tls.cert", now, warn, f);
    }
    if let Some(c) = &config.tls.client_ca {
        check_certs(c, "tls.client_ca", now, warn, f);
    }
    for (i, c) in config.entra.extra_trust_roots.iter().enumerate() {
        check_certs(c, &format!("entra.extra_trust_roots[{i}]"), now, warn, f);
    }
    for s in &config.platform.services {
        if let Some(c) = &s.ca {
            check_certs(c, &format!("platform.services[{}].ca", s.id), now, warn, f);
        }
    }
    check_profiles(config, f);
}

fn check_data_dir(dir: &Path, f: &mut Findings) {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => f.error(
            "storage.data_dir",
            format!("{} is not a directory", dir.display()),
        ),
        Ok(m) if m.permissions().mode() & 0o007 != 0 => f.warn(
            "storage.data_dir",
            format!(
                "{} is open to others (mode {:04o}); fix: chmod 700 {}",
                dir.display(),
                m.permissions().mode() & 0o7777,
                dir.display()
            ),
        ),
        Ok(_) => {}
        Err(_) => match dir.parent() {
            Some(p) if p.as_os_str().is_empty() || p.is_dir() => {}
            _ => f.error(
                "storage.data_dir",
                format!("neither {} nor its parent directory exists", dir.display()),
            ),
        },
    }
}

/// Reads a key file, reporting a missing file, a file inside the data directory and a mode
/// open beyond its owner; `None` when it cannot be read.
fn read_key(
    path: &Path,
    name: &str,
    data_dir: &Path,
    f: &mut Findings,
) -> Option<Zeroizing<Vec<u8>>> {
    if inside(path, data_dir) {
        f.error(
            name,
            format!(
                "{} is inside storage.data_dir {}: keys are kept out of the data directory so a copy of the data cannot sign or unseal; move it",
                path.display(),
                data_dir.display()
            ),
        );
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            f.error(name, format!("{}: {e}", path.display()));
            return None;
        }
    };
    let mode = meta.permissions().mode() & 0o7777;
    let fix = format!("fix: chmod 600 {}", path.display());
    // The rule `onboard serve` refuses by, then the group read it allows but warns of.
    if let Some(problem) = onboard_core::key_file::problem_of_mode(mode) {
        f.error(
            name,
            format!("{} {problem} (mode {mode:04o}); {fix}", path.display()),
        );
    } else if mode & 0o040 != 0 {
        f.warn(
            name,
            format!(
                "{} is readable by group {} (mode {mode:04o}): fine only if the service user alone is in it (as deploy/README.md's root:onboard 0640, or a Kubernetes fsGroup); else {fix}",
                path.display(),
                meta.gid()
            ),
        );
    }
    match std::fs::read(path) {
        Ok(b) => Some(Zeroizing::new(b)),
        Err(e) => {
            f.error(name, format!("{}: {e}", path.display()));
            None
        }
    }
}

/// True when `path` is `dir` or below it (compared after resolving what exists).
pub(super) fn inside(path: &Path, dir: &Path) -> bool {
    let canon = |p: &Path| -> PathBuf { std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned()) };
    canon(path).starts_with(canon(dir))
}

/// Every certificate in a PEM file parses and is within its validity period, and none
/// expires within the warning window.
pub(super) fn check_certs(path: &Path, name: &str, now: i64, warn: i64, f: &mut Findings) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            f.error(name, format!("{}: {e}", path.display()));
            return;
        }
    };
    let mut count = 0;
    for (i, pem) in Pem::iter_from_buffer(&bytes).enumerate() {
        let pem = match pem {
            Ok(p) => p,
            Err(e) => {
                f.error(name, format!("{}: PEM block {i}: {e}", path.display()));
                return;
            }
        };
        if pem.label != "CERTIFICATE" {
            continue;
        }
        count += 1;
        let cert = match pem.parse_x509() {
            Ok(c) => c,
            Err(e) => {
                f.error(
                    name,
                    format!("{}: certificate {i} does not parse: {e}", path.display()),
                );
                continue;
            }
        };
        let subject = cert.subject().to_string();
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        let until = rfc3339(cert.validity().not_after.to_datetime());
        if not_after < now {
            f.error(
                name,
                format!(
                    "{}: certificate {i} ({subject}) expired on {until}",
                    path.display()
                ),
            );
        } else if not_before > now {
            f.error(
                name,
                format!(
                    "{}: certificate {i} ({subject}) is not valid before {}",
                    path.display(),
                    rfc3339(cert.validity().not_before.to_datetime())
                ),
            );
        } else if not_after - now < warn {
            f.warn(
                name,
                format!(
                    "{}: certificate {i} ({subject}) expires on {until}, in {} days; renew it",
                    path.display(),
                    (not_after - now) / DAY
                ),
            );
        }
    }
    if count == 0 {
        f.error(
            name,
            format!("{}: no PEM certificate in the file", path.display()),
        );
    }
}

/// A certificate time as RFC 3339.
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The profiles file loads, and the profiles named elsewhere exist.
fn check_profiles(config: &Config, f: &mut Findings) {
    let set = match &config.platform.profiles_path {
        None => ProfileSet::defaults().map_err(|e| e.to_string()),
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("{}: {e}", p.display()))
            .and_then(|t| ProfileSet::from_toml(&t).map_err(|e| format!("{}: {e}", p.display()))),
    };
    match set {
        Err(e) => f.error("platform.profiles_path", e),
        Ok(set) => {
            for name in &config.verification.repair_profiles {
                if !set.names().contains(&name.as_str()) {
                    f.error(
                        "verification.repair_profiles",
                        format!("no profile named {name:?} in the profiles"),
                    );
                }
            }
        }
    }
}

//! Tidy: the architecture invariants a grep can check, so they hold by construction rather than
//! by review. Each rule names the files that break it. Shipped code is every `.rs` file under a
//! crate's `src/` (and the binary's `src/`), up to its first `#[cfg(test)]`, except the
//! test-only modules (`testing.rs`, `tests.rs`, `*_tests.rs`).

use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file below `dir`, skipping build output.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, &[".rs"])
}

/// Every file below `dir` whose name ends with one of `endings`, skipping build output.
fn files_ending(dir: &Path, endings: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "node_modules" {
                out.extend(files_ending(&p, endings));
            }
        } else if endings.iter().any(|end| name.ends_with(end)) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every `.rs` file of the repository (sources, tests, benches, build scripts).
fn all_rust() -> Vec<PathBuf> {
    let r = root();
    let mut v = rust_files(&r.join("crates"));
    for d in ["src", "tests", "benches", "fuzz"] {
        v.extend(rust_files(&r.join(d)));
    }
    v
}

/// What `check` makes of each Rust file (its path from the root, its text), where it makes
/// something.
fn each_rust<T>(check: impl Fn(String, String) -> Option<T>) -> Vec<T> {
    all_rust()
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(root()).ok()?.to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).ok()?;
            check(rel, text)
        })
        .collect()
}

/// Shipped source files with their shipped text (up to the first `#[cfg(test)]`).
fn shipped() -> Vec<(String, String)> {
    each_rust(|rel, text| {
        let in_src = rel.starts_with("src/") || rel.contains("/src/");
        let test_only = rel.ends_with("testing.rs")
            || rel.ends_with("tests.rs")
            || rel.starts_with("crates/testkit/");
        if !in_src || test_only {
            return None;
        }
        let cut = text.find("#[cfg(test)]").unwrap_or(text.len());
        Some((rel, text[..cut].to_owned()))
    })
}

/// Each Rust file with lines whose code contains `needle`: its path and `(Nx)`, N such lines.
fn containing(needle: &str) -> Vec<(String, String)> {
    each_rust(|rel, text| {
        let hits = text.lines().filter(|l| code(l).contains(needle)).count();
        (hits > 0).then(|| (rel, format!("({hits}x)")))
    })
}

/// The code of a line: what precedes a `//` comment (a crude cut, good enough for the words
/// these rules look for).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// `file:line` of every shipped line containing any of `needles`, outside the files `allowed`
/// (path prefixes).
fn offenders(needles: &[&str], allowed: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, text) in shipped() {
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| code(line).contains(n)) {
                out.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    out
}

#[test]
fn grpc_statuses_are_built_only_by_the_one_error_mapping() {
    let constructors = [
        "Status::new(",
        "Status::internal(",
        "Status::unavailable(",
        "Status::invalid_argument(",
        "Status::not_found(",
        "Status::failed_precondition(",
        "Status::out_of_range(",
        "Status::permission_denied(",
        "Status::unauthenticated(",
        "Status::aborted(",
        "Status::already_exists(",
        "Status::deadline_exceeded(",
        "Status::unimplemented(",
        "Status::resource_exhausted(",
        "Status::cancelled(",
        "Status::unknown(",
        "Status::with_error_details(",
        "Status::with_details(",
    ];
    let bad = offenders(&constructors, &["crates/server/src/error.rs"]);
    assert!(
        bad.is_empty(),
        "build a ServerError and convert it (crates/server/src/error.rs is the one mapping):\n{}",
        bad.join("\n")
    );
}

#[test]
fn id_fields_are_checked_as_uuids_before_any_lookup() {
    // A malformed id is INVALID_ARGUMENT on its field (AIP-193), and nothing put in an id
    // field reaches the records kept beside the onboardings (`idempotency/<id>`, ...).
    let presence_only = [
        "required(\"onboarding_id\"",
        "required(\"id\"",
        "required(\"key_id\"",
        "required(\"registration.client_id\"",
    ];
    let bad = offenders(&presence_only, &[]);
    assert!(
        bad.is_empty(),
        "check id fields with ServerError::uuid, not only for presence:\n{}",
        bad.join("\n")
    );
}

#[test]
fn sled_batches_transactions_and_async_flushes_are_not_used() {
    let bad = offenders(&["apply_batch", "flush_async", ".transaction("], &[]);
    assert!(
        bad.is_empty(),
        "see ARCHITECTURE.md, sled traps: insert, then onboard_core::store::flush_durably:\n{}",
        bad.join("\n")
    );
}

#[test]
fn state_store_writers_flush_through_a_group_flush() {
    // A flush per writer seals a nearly empty 512 KiB sled buffer each: under load the server's
    // memory went to those (BENCHMARKS.md, issue 9). Only core calls the flush itself.
    let bad = offenders(
        &["flush_durably("],
        &["crates/core/src/store.rs", "crates/core/src/store/"],
    );
    assert!(
        bad.is_empty(),
        "durable state writes go through onboard_core::store::GroupFlush (ARCHITECTURE.md, sled traps):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_rustls_provider_is_installed_in_one_place() {
    let allowed = ["crates/core/src/tls.rs", "tests/tidy.rs"];
    let bad: Vec<String> = containing("install_default")
        .into_iter()
        .filter(|(rel, _)| !allowed.contains(&rel.as_str()))
        .map(|(rel, hits)| format!("{rel} {hits}"))
        .collect();
    assert!(
        bad.is_empty(),
        "call onboard_core::tls::install_crypto_provider() instead:\n{}",
        bad.join("\n")
    );
}

#[test]
fn audit_entries_are_built_only_by_the_core_type() {
    let bad = offenders(
        &[
            "PreparedEntry::new",
            "append_fields(",
            "append_blocking(",
            "append_prepared(",
        ],
        &["crates/audit-log/", "crates/core/"],
    );
    assert!(
        bad.is_empty(),
        "build an onboard_core::audit::AuditEntry and call .append(&log):\n{}",
        bad.join("\n")
    );
}

#[test]
fn secret_values_leave_only_where_a_hand_over_is_audited() {
    // `Delivery::deliver` puts a value in an answer: only after the `secret.hand_over` entry
    // of ClaimSecret (claim.rs), the operator's Provision stream (forward.rs), or the
    // Credentials service's `hand_over` (the one caller of `new_secret_pb`, convert.rs).
    let bad = offenders(
        &[".deliver(&"],
        &[
            "crates/server/src/onboarding/claim.rs",
            "crates/server/src/onboarding/forward.rs",
            "crates/server/src/credentials/convert.rs",
        ],
    );
    let calls: Vec<String> = shipped()
        .into_iter()
        .flat_map(|(rel, text)| {
            let mut fn_name = String::new();
            let mut out = Vec::new();
            for line in text.lines() {
                if let Some(rest) = code(line).trim_start().split("fn ").nth(1) {
                    fn_name = rest.split(['(', '<']).next().unwrap_or("").to_owned();
                }
                if code(line).contains("new_secret_pb(") && !line.contains("fn new_secret_pb") {
                    out.push(format!("{rel} in fn {fn_name}"));
                }
            }
            out
        })
        .collect();
    assert!(
        bad.is_empty() && calls == ["crates/server/src/credentials/mod.rs in fn hand_over"],
        "a secret value must leave through an audited hand-over:\n{}\nnew_secret_pb called in: {calls:?}",
        bad.join("\n")
    );
}

#[test]
fn shipped_code_has_no_unwrap_or_expect() {
    let bad = offenders(&[".unwrap()", ".expect("], &[]);
    assert!(
        bad.is_empty(),
        "return an error instead (input comes from outside):\n{}",
        bad.join("\n")
    );
}

/// Source files in every language the repository holds: the wizard's page, script and style,
/// the test and deployment scripts, the protobuf definitions, CI.
const SOURCE_ENDINGS: &[&str] = &[".rs", ".js", ".css", ".html", ".py", ".proto", ".sh"];

#[test]
fn no_source_file_is_over_600_lines() {
    let r = root();
    let mut files = vec![r.join(".ci/run")];
    for d in [
        "crates", "src", "tests", "benches", "fuzz", "proto", "deploy", ".ci",
    ] {
        files.extend(files_ending(&r.join(d), SOURCE_ENDINGS));
    }
    assert!(
        files.iter().any(|p| p.ends_with("wizard/assets/app.js")),
        "the walk misses the wizard's script"
    );
    let bad: Vec<String> = files
        .iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).ok()?.lines().count();
            let rel = p.strip_prefix(&r).ok()?.display();
            (n > 600).then(|| format!("{rel}: {n} lines"))
        })
        .collect();
    assert!(bad.is_empty(), "split by meaning:\n{}", bad.join("\n"));
}

#[test]
fn tests_share_code_through_the_test_kit_not_path_includes() {
    let bad = each_rust(|rel, text| {
        text.lines()
            .any(|l| l.trim_start().starts_with("#[path"))
            .then_some(rel)
    });
    assert!(
        bad.is_empty(),
        "use crates/testkit instead of #[path] includes:\n{}",
        bad.join("\n")
    );
}

/// The workspace's crates: directories under `crates/` with a Cargo.toml, and the root.
fn crates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("Cargo.toml").exists())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.push(root());
    v
}

#[test]
fn every_crate_opts_into_the_workspace_lints_and_says_its_one_job() {
    let mut bad = Vec::new();
    for c in crates() {
        let manifest = std::fs::read_to_string(c.join("Cargo.toml")).unwrap_or_default();
        if !manifest.contains("[lints]\nworkspace = true") {
            bad.push(format!("{}: no `[lints] workspace = true`", c.display()));
        }
        let entry = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|f| c.join(f))
            .find(|f| f.exists());
        let Some(entry) = entry else { continue };
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        let doc: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
        if doc.len() < 2 {
            bad.push(format!(
                "{}: needs a doc paragraph (`//!`) saying the crate's one job",
                entry.display()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn architecture_md_maps_every_crate_with_its_invariants() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap_or_default();
    let mut bad = Vec::new();
    for c in crates() {
        let Ok(rel) = c.strip_prefix(root()) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let heading = format!("### `{}`", rel.display());
        let Some(start) = arch.find(&heading) else {
            bad.push(format!("no `{heading}` section"));
            continue;
        };
        let section = &arch[start + heading.len()..];
        let section = &section[..section.find("\n### ").unwrap_or(section.len())];
        if !section.contains("Architecture invariant:") {
            bad.push(format!("{heading}: no \"Architecture invariant:\" line"));
        }
    }
    assert!(bad.is_empty(), "ARCHITECTURE.md:\n{}", bad.join("\n"));
}

#[test]
fn the_wizard_builds_service_requests_only_through_visit() {
    let bad: Vec<String> = containing("Request::new(")
        .into_iter()
        .filter(|(rel, _)| {
            rel.starts_with("crates/server/src/wizard/") && !rel.ends_with("/visit.rs")
        })
        .map(|(rel, hits)| format!("{rel} {hits}"))
        .collect();
    assert!(
        bad.is_empty(),
        "use Visit::request, so the service sees the browser's address and the RPC \
         (the [limits] buckets):\n{}",
        bad.join("\n")
    );
}

#[test]
fn key_bytes_are_held_only_in_zeroizing_types() {
    // A struct field `name: [u8; 32]` is a key left in memory after use (a config's copy of the
    // sealing key was one): keys are `Zeroizing<[u8; 32]>` or `SealingKey`. Hashes are public.
    let mut bad = Vec::new();
    for (rel, text) in shipped() {
        for (i, line) in text.lines().enumerate() {
            let field = code(line).trim().trim_start_matches("pub(crate) ");
            let field = field.trim_start_matches("pub ");
            if let Some((name, ty)) = field.split_once(": ")
                && ty.trim_end_matches(',') == "[u8; 32]"
                && !name.contains("hash")
            {
                bad.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "32-byte fields that may hold a key, not in a zeroizing type:\n{}",
        bad.join("\n")
    );
}

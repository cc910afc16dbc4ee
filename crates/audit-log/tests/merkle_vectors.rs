//! Every RFC 6962 proof vector in testdata/merkle (transparency-dev/merkle, Apache-2.0): the
//! verifier accepts each case marked `wantErr: false` and rejects each marked `wantErr: true`.

use std::path::{Path, PathBuf};

use audit_log::merkle::{verify_consistency, verify_inclusion};
use audit_log::{Hash, leaf_hash, reference_root};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/merkle")
}

fn cases(kind: &str) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![vectors_dir().join(kind)];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let v = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                out.push((p, v));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn bytes(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap()).unwrap()
}

fn hash(v: &Value) -> Option<Hash> {
    bytes(v).try_into().ok()
}

/// A proof; JSON `null` is the empty proof (Go's nil slice).
fn proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        _ => v.as_array().unwrap().iter().map(hash).collect(),
    }
}

/// Runs `check` on every case of `kind` and compares its verdict with `wantErr`: every case,
/// none overruled (the size-0 cases hold under c2sp.org/merkle-tree too: an empty proof from
/// size 0 is valid only from the empty tree's root to a 32-byte root, and theirs are not).
fn run_all(kind: &str, check: impl Fn(&Value) -> Result<(), String>) {
    let all = cases(kind);
    assert!(all.len() > 60, "only {} {kind} cases found", all.len());
    for (path, c) in &all {
        let want_err = c["wantErr"].as_bool().unwrap();
        let result = check(c);
        assert_eq!(
            result.is_err(),
            want_err,
            "{}: {} → {result:?}",
            path.display(),
            c["desc"]
        );
    }
}

#[test]
fn inclusion_vectors() {
    run_all("inclusion", |c| {
        match (hash(&c["leafHash"]), hash(&c["root"]), proof(&c["proof"])) {
            (Some(leaf), Some(root), Some(p)) => verify_inclusion(
                c["leafIdx"].as_u64().unwrap(),
                c["treeSize"].as_u64().unwrap(),
                &leaf,
                &p,
                &root,
            )
            .map_err(|e| e.to_string()),
            _ => Err("a hash is not 32 bytes".to_owned()),
        }
    });
}

#[test]
fn consistency_vectors() {
    run_all("consistency", |c| match proof(&c["proof"]) {
        Some(p) => verify_consistency(
            c["size1"].as_u64().unwrap(),
            c["size2"].as_u64().unwrap(),
            &bytes(&c["root1"]),
            &bytes(&c["root2"]),
            &p,
        )
        .map_err(|e| e.to_string()),
        None => Err("a proof hash is not 32 bytes".to_owned()),
    });
}

#[test]
fn the_eight_leaf_tree_has_the_documented_roots() {
    let inputs = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    let leaves: Vec<Hash> = inputs
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect();
    assert!(hex::encode(reference_root(&leaves[..1])).starts_with("6e340b9c"));
    assert!(hex::encode(reference_root(&leaves[..1])).ends_with("a01d"));
    assert_eq!(
        hex::encode(reference_root(&leaves[..3])),
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
    );
    assert_eq!(
        hex::encode(reference_root(&leaves)),
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
}

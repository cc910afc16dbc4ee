use super::*;

/// The example checkpoint body of c2sp.org/tlog-cosignature and its example time.
const SPEC_BODY: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const SPEC_TIME: u64 = 1_679_315_147;

/// Seed from filippo.io/torchwood `internal/witness/witness_test.go` (public key
/// 64848ad8…6a8e50 there). The key id, vkey, key file and cosignature below were computed
/// independently with Python `cryptography` 48 (Ed25519) and `hashlib`, not with this crate.
const SEED_HEX: &str = "31ffc2116ecbe003acaa800ab70757bd7d53206e3febef6a6d0796d95530b34f";
const KAT_SKEY: &str =
    "PRIVATE+KEY+example.com+db38d226+BDH/whFuy+ADrKqACrcHV719UyBuP+vvam0HltlVMLNP";
const KAT_VKEY: &str = "example.com+db38d226+BGSEitir7W6FmBs7OHWyUrh2frtLAvcDrKOx5xu9ao5Q";
const KAT_LINE: &str = "\u{2014} example.com 2zjSJgAAAABkGFDLTNoErpaFYoIjxSg1oJ6wS+ZgVHSd9KzgUVie5EgN4+xyT4Krxt1jLqJ0MhEs9ruPoxFVPPKvVikwV7Gp4/vDAA==\n";

fn kat_key() -> CosignerKey {
    let seed: [u8; 32] = hex::decode(SEED_HEX).unwrap().try_into().unwrap();
    CosignerKey::new("example.com", SigningKey::from_bytes(&seed)).unwrap()
}

fn line(s: &str) -> SignatureLine {
    SignatureLine::parse(s.trim_end_matches('\n')).unwrap()
}

/// `line`, a signature line of a 76-byte signature (its base64 ends in `==`), with non-zero
/// trailing bits in its last base64 character: the same bytes to Go's `base64.StdEncoding`
/// (and `note::SIG_B64`), malformed to a strict decoder.
pub(crate) fn with_trailing_bits(line: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (head, b64) = line.trim_end_matches('\n').rsplit_once(' ').unwrap();
    let data = b64.strip_suffix("==").unwrap();
    let (keep, last) = data.split_at(data.len() - 1);
    let v = ALPHABET
        .iter()
        .position(|&c| c == last.as_bytes()[0])
        .unwrap();
    // The low four bits of the last character are trailing bits: zero in the canonical form.
    let tweaked = format!("{keep}{}==", char::from(ALPHABET[v | 1]));
    assert!(B64.decode(&tweaked).is_err(), "a strict decoder refuses it");
    assert_eq!(
        note::SIG_B64.decode(&tweaked).unwrap(),
        B64.decode(b64).unwrap()
    );
    format!("{head} {tweaked}\n")
}

#[test]
fn signed_message_is_the_spec_example() {
    assert_eq!(
        signed_message(SPEC_TIME, SPEC_BODY),
        "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );
}

#[test]
fn known_answer_cosignature_from_an_independent_implementation() {
    let k = kat_key();
    assert_eq!(k.verifier().to_string(), KAT_VKEY);
    assert_eq!(&*k.to_go_private_key(), KAT_SKEY);
    assert_eq!(k.cosign(SPEC_BODY, SPEC_TIME).unwrap(), KAT_LINE);
    let v = CosignerVerifier::parse(KAT_VKEY).unwrap();
    let c = v.verify(SPEC_BODY, &line(KAT_LINE)).unwrap();
    assert_eq!(c.timestamp, SPEC_TIME);
    assert_eq!(c.key_id, 0xdb38d226);
    let from_file = CosignerKey::from_key_file_text(KAT_SKEY).unwrap();
    assert_eq!(from_file.verifier(), v);
}

#[test]
fn spec_and_go_example_cosignatures_decode_to_their_timestamps() {
    // c2sp.org/tlog-cosignature's example line: its timestamp is the example's `time` line.
    let spec = line(
        "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==",
    );
    let c = Cosignature::from_line(&spec).unwrap();
    assert_eq!((c.key_id, c.timestamp), (0x8d66cf3f, SPEC_TIME));
    assert_eq!(
        c.to_line().trim_end(),
        format!(
            "\u{2014} witness.example.com/w1 {}",
            "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
        )
    );
    // github.com/transparency-dev/formats note_cosigv1_test.go TestCoSigV1Timestamp.
    let go = line(
        "\u{2014} w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==",
    );
    assert_eq!(
        Cosignature::from_line(&go).unwrap().timestamp,
        1_727_964_367
    );
    // The same test's "wrong type of signature": a 68-byte plain Ed25519 note signature.
    let plain = line(
        "\u{2014} w eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY=",
    );
    assert!(Cosignature::from_line(&plain).is_err());
}

#[test]
fn verifier_keys_from_go_parse_and_convert() {
    // transparency-dev/formats TestCoSigV1NewVerifier: a native 0x04 key and a 0x01 key.
    let native = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
    let v = CosignerVerifier::parse(native).unwrap();
    assert_eq!(v.to_string(), native);
    assert_eq!(v.key_id(), 0xda77ade7);
    let plain =
        CosignerVerifier::parse("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
            .unwrap();
    assert_eq!(plain.name(), "TEST");
    assert_ne!(
        plain.key_id(),
        0x7997405c,
        "a 0x01 key cosigns under its 0x04 key id"
    );
    assert!(plain.to_string().contains("+BAcC+"));
    for bad in [
        "bananas.sigstore.dev+12344556",
        "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
        "rekor.sigstore.dev+12345678+AwEB",
        "remora.n621.de+da77ade8+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
        "remora.n621.de+NOT_A_NUMBER+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
        "remora.n621.de+da77ade7+AuvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    ] {
        assert!(CosignerVerifier::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn go_generated_plain_key_file_cosigns_and_matches_its_vkey() {
    // transparency-dev/witness internal/witness/witness_test.go: wSK and wPK (type 0x01).
    let k = CosignerKey::from_key_file_text(
        "PRIVATE+KEY+witness+f13a86db+AaLa/dfyBhyo/m0Z7WCi98ENVZWtrP8pxgRNrx7tIWiA",
    )
    .unwrap();
    let v =
        CosignerVerifier::parse("witness+f13a86db+AdYV1Ztajd9BvyjP2HgpwrqYL6TjOwIjGMOq8Bu42xbN")
            .unwrap();
    assert_eq!(k.verifier(), v);
    let l = k.cosign(SPEC_BODY, 7).unwrap();
    assert!(v.verify(SPEC_BODY, &line(&l)).is_some());
    // A wrong key id in the file is refused.
    assert!(
        CosignerKey::from_key_file_text(
            "PRIVATE+KEY+witness+f13a86dc+AaLa/dfyBhyo/m0Z7WCi98ENVZWtrP8pxgRNrx7tIWiA"
        )
        .is_err()
    );
}

#[test]
fn signatures_cover_body_extensions_and_time() {
    let k = kat_key();
    let v = k.verifier();
    let ext = format!("{SPEC_BODY}extension 1\n");
    let l = line(&k.cosign(&ext, 100).unwrap());
    assert!(v.verify(&ext, &l).is_some());
    assert!(v.verify(SPEC_BODY, &l).is_none());
    assert!(
        v.verify(&ext.replace("extension 1", "extension X"), &l)
            .is_none()
    );
    let mut raw = l.raw.clone();
    raw[11] ^= 1; // the timestamp
    assert!(
        v.verify(&ext, &SignatureLine { raw, ..l.clone() })
            .is_none()
    );
    let other = CosignerKey::generate("example.com").unwrap().verifier();
    assert!(!other.matches(&l));
    assert!(other.verify(&ext, &l).is_none());
}

#[test]
fn refuses_bodies_that_are_not_checkpoints_and_bad_names() {
    let k = kat_key();
    assert!(k.cosign("no newline", 1).is_err());
    assert!(k.cosign("only\ntwo\n", 1).is_err());
    assert!(k.cosign(SPEC_BODY, u64::MAX).is_err());
    for name in ["", "a b", "a+b", "tab\tname"] {
        assert!(CosignerKey::generate(name).is_err(), "{name:?}");
    }
}

#[test]
fn generated_keys_round_trip_through_their_file_and_vkey() {
    let k = CosignerKey::generate("witness.example/w1").unwrap();
    let text = k.to_go_private_key();
    let back = CosignerKey::from_key_file_text(&text).unwrap();
    assert_eq!(back.verifier(), k.verifier());
    assert_eq!(
        CosignerVerifier::parse(&k.verifier().to_string()).unwrap(),
        k.verifier()
    );
    assert!(!format!("{k:?}").contains(&text[20..]));
}

#[test]
fn signature_lines_parse_strictly() {
    assert!(SignatureLine::parse("- name AAAAAAA=").is_err());
    assert!(SignatureLine::parse("\u{2014} name").is_err());
    assert!(SignatureLine::parse("\u{2014} name !!!").is_err());
    assert!(SignatureLine::parse("\u{2014} name AAAA").is_err());
    assert!(SignatureLine::parse_trusted_block("\u{2014} a AAAAAAA=", 10, &[]).is_err());
    let many = "\u{2014} a AAAAAAA=\n".repeat(3);
    assert!(SignatureLine::parse_trusted_block(&many, 2, &[]).is_err());
    assert!(
        SignatureLine::parse_trusted_block(&many, 3, &[])
            .unwrap()
            .is_empty()
    );
}

/// c2sp.org/signed-note: verifiers "MUST ignore signatures from unknown keys, even if they
/// share a name or ID (but not both) with a known key"; c2sp.org/tlog-witness: "The client MUST
/// ignore any cosignatures from unknown keys". Whatever an unknown key's line holds, the block
/// keeps the trusted key's lines; base64 is read as Go reads it.
#[test]
fn trusted_block_ignores_whatever_unknown_keys_sent() {
    let k = kat_key();
    let v = k.verifier();
    let mine = k.cosign(SPEC_BODY, SPEC_TIME).unwrap();
    let stranger = CosignerKey::generate("stranger.example").unwrap();
    let namesake = CosignerKey::generate("example.com").unwrap();
    let unknown = [
        with_trailing_bits(&stranger.cosign(SPEC_BODY, 1).unwrap()),
        namesake.cosign(SPEC_BODY, 1).unwrap(),
        "\u{2014} stranger.example !!!\n".to_owned(),
        "\u{2014} stranger.example AAAA\n".to_owned(),
        "\u{2014} stranger.example\n".to_owned(),
        "\u{2014} bad+name AAAAAAA=\n".to_owned(),
    ];
    let block = format!("{}{}", unknown.concat(), with_trailing_bits(&mine));
    let got = SignatureLine::parse_trusted_block(&block, 10, &[&v]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], line(&mine), "the same bytes as the canonical line");
    assert!(v.verify(SPEC_BODY, &got[0]).is_some());
    // A line naming the trusted key that does not parse may be that key's: refused, as is a
    // line that is no signature line at all.
    for bad in [
        "\u{2014} example.com !!!\n",
        "\u{2014} example.com AAAA\n",
        "not a signature\n",
    ] {
        let block = format!("{mine}{bad}");
        assert!(
            SignatureLine::parse_trusted_block(&block, 10, &[&v]).is_err(),
            "{bad:?}"
        );
    }
}

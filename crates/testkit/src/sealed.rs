//! The independent side of sealed delivery (`proto/onboard/v1/delivery.proto`): key pairs
//! made, and sealed secrets opened, by pyhpke (`tests/interop/open_sealed.py`), an HPKE
//! implementation that shares no code with the server's.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use onboard_proto::v1 as pb;
use serde_json::{Value, json};

/// The pyhpke script.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/interop/open_sealed.py"
);

/// An X25519 key pair made by pyhpke.
pub struct Keys {
    /// The public key's 32 bytes.
    pub public: Vec<u8>,
    /// The private key, hex, as the script takes it back.
    private: String,
}

impl Keys {
    /// A new key pair.
    pub fn new() -> Result<Self> {
        let out = Command::new("python3").args([SCRIPT, "keygen"]).output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let hex_of = |k: &str| v[k].as_str().map(str::to_owned).context("key");
        Ok(Self {
            public: hex::decode(hex_of("public_key")?)?,
            private: hex_of("private_key")?,
        })
    }

    /// The request field sealing to this key.
    pub fn seal_to(&self) -> Option<pb::SealTo> {
        Some(pb::SealTo {
            x25519_public_key: self.public.clone(),
        })
    }

    /// `sealed` opened by pyhpke with `key_id` as its `aad`: the secret, or `None` when it
    /// does not open.
    pub fn open(&self, sealed: Option<&pb::SealedSecret>, key_id: &str) -> Result<Option<String>> {
        let s = sealed.context("no sealed secret in the answer")?;
        ensure!(s.enc.len() == 32, "enc is {} bytes", s.enc.len());
        let mut child = Command::new("python3")
            .args([SCRIPT, "open"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let input = json!({
            "private_key": self.private,
            "enc": hex::encode(&s.enc),
            "ciphertext": hex::encode(&s.ciphertext),
            "key_id": key_id,
        });
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        match out.status.code() {
            Some(0) => Ok(Some(String::from_utf8(out.stdout)?)),
            Some(3) => Ok(None),
            _ => bail!("{}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}

//! A tlog-witness client: submits a checkpoint with a consistency proof and interprets the
//! answer. It keeps only cosignatures by the configured witness key, each verified.

use std::time::Duration;

use audit_log::Hash;
use reqwest::header::CONTENT_TYPE;

use crate::cosig::{Cosignature, CosignerVerifier, SignatureLine};
use crate::error::WitnessError;
use crate::protocol::{
    ADD_CHECKPOINT_PATH, AddCheckpointRequest, MAX_PROOF_LINES, MAX_REQUEST_BYTES, MAX_SIGNATURES,
    SIZE_CONTENT_TYPE, parse_size_body, split_note,
};

/// The largest answer read from a witness: a 200 is signature lines, which may be several
/// post-quantum cosignatures of nearly 5 kB each (c2sp.org/signed-note), so the same bound as a
/// request.
const MAX_RESPONSE_BYTES: usize = MAX_REQUEST_BYTES;

/// One configured witness.
#[derive(Debug, Clone)]
pub struct WitnessEndpoint {
    /// The submission prefix, e.g. `https://witness.example.org` (`/add-checkpoint` is appended).
    pub url: String,
    /// The witness's cosigner key; cosignatures by other keys are ignored.
    pub verifier: CosignerVerifier,
    /// How long one request may take, connection included.
    pub timeout: Duration,
}

/// What a witness answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// 200: the verified cosignature by the configured key; of several (tlog-witness allows a
    /// witness more than one line), the newest, the one a verifier counts.
    Cosigned(Cosignature),
    /// 409 `text/x.tlog.size`: the size of the latest checkpoint the witness cosigned, which
    /// is not the old size sent (resubmit from it).
    Conflict {
        /// The witness's size.
        size: u64,
    },
    /// 409 to a request whose old size equals the checkpoint size, without a size body: the
    /// witness cosigned another root at that size (a fork). Also a 409 whose size body is the
    /// old size sent (at any checkpoint size): the witness holds exactly the tree we named and
    /// still conflicts, so this log contradicts what it cosigned. The text says which.
    RootMismatch(String),
    /// Any other status (400, 403, 404, 422, 429, 5xx) with the start of its body.
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The first 300 characters of the body.
        body: String,
    },
}

/// A client for one witness.
#[derive(Debug, Clone)]
pub struct WitnessClient {
    /// The configuration.
    endpoint: WitnessEndpoint,
    /// `<url>/add-checkpoint`.
    add_url: String,
    /// A keep-alive connection pool (the protocol recommends keep-alive).
    http: reqwest::Client,
}

impl WitnessClient {
    /// A client for `endpoint`.
    pub fn new(endpoint: WitnessEndpoint) -> Result<Self, WitnessError> {
        let http = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .connect_timeout(endpoint.timeout)
            .build()
            .map_err(|e| WitnessError::Config(format!("HTTP client for {}: {e}", endpoint.url)))?;
        let add_url = format!(
            "{}{ADD_CHECKPOINT_PATH}",
            endpoint.url.trim_end_matches('/')
        );
        Ok(Self {
            endpoint,
            add_url,
            http,
        })
    }

    /// The configuration.
    pub fn endpoint(&self) -> &WitnessEndpoint {
        &self.endpoint
    }

    /// Submits `note` (a signed checkpoint) with a consistency proof from `old_size`.
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        note: &str,
    ) -> Result<AddOutcome, WitnessError> {
        let (text, _) = split_note(note)?;
        let size = audit_log::Checkpoint::parse_text(text)?.size;
        if proof.len() > MAX_PROOF_LINES {
            return Err(WitnessError::InvalidProof(format!(
                "{} proof hashes; the protocol allows at most {MAX_PROOF_LINES}",
                proof.len()
            )));
        }
        let body = AddCheckpointRequest {
            old_size,
            proof: proof.to_vec(),
            checkpoint_note: note.to_owned(),
        }
        .encode();
        let unreachable = |e: reqwest::Error| WitnessError::Unreachable {
            url: self.add_url.clone(),
            detail: if e.is_timeout() {
                format!("no answer within {:?}", self.endpoint.timeout)
            } else {
                error_chain(&e)
            },
        };
        let mut resp = self
            .http
            .post(&self.add_url)
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(self.bad(format!("answer longer than {MAX_RESPONSE_BYTES} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        match status {
            200 => self.cosignatures(text, &bytes).map(AddOutcome::Cosigned),
            409 if content_type.as_deref().is_some_and(is_size_type) => {
                let witness_size = parse_size_body(&bytes).ok_or_else(|| {
                    self.bad(format!(
                        "409 size body {:?} is not `<decimal>\\n`",
                        String::from_utf8_lossy(&bytes)
                    ))
                })?;
                self.size_conflict(old_size, size, witness_size)
            }
            // Without a size, a 409 can only mean another root at the same size; anything
            // else is a witness outside the protocol, not evidence of a fork.
            // Every tree of size 0 has the empty root: a 409 at size 0 proves nothing (a
            // witness that never cosigned may answer a first `old 0` of an empty log so).
            409 if old_size == 0 && size == 0 => Err(self.bad(format!(
                "409 for the empty tree, which has one root: {}",
                snippet(&bytes)
            ))),
            409 if old_size == size => Ok(AddOutcome::RootMismatch(snippet(&bytes))),
            409 => Err(self.bad(format!(
                "409 without a {SIZE_CONTENT_TYPE} body for old size {old_size} and size {size}: {}",
                snippet(&bytes)
            ))),
            _ => Ok(AddOutcome::Rejected {
                status,
                body: snippet(&bytes),
            }),
        }
    }

    /// A `409` naming the witness's size. tlog-witness answers `409` with its size when the
    /// old size is not that size ("resubmit from there"), and `409` (body unspecified) when it
    /// is, equals the checkpoint size, and the roots differ. A size equal to the old size we
    /// sent is therefore never "resubmit": the same request would meet the same answer. At the
    /// checkpoint's size it is another root at that size (a fork); below it, the witness holds
    /// that size and still refuses what extends it, which it owes a `422` for. Either way it is
    /// evidence against the log, as a `422` is, and never a retry.
    fn size_conflict(
        &self,
        old_size: u64,
        size: u64,
        witness_size: u64,
    ) -> Result<AddOutcome, WitnessError> {
        if witness_size != old_size {
            return Ok(AddOutcome::Conflict { size: witness_size });
        }
        if old_size == 0 {
            // Every tree extends the empty one, and the empty tree has one root: a witness
            // outside the protocol, no evidence.
            return Err(self.bad(format!(
                "409 naming size 0, the old size sent, for a checkpoint of {size}"
            )));
        }
        Ok(AddOutcome::RootMismatch(if old_size == size {
            format!("409 naming the same size {size}: the witness holds another root at it")
        } else {
            format!(
                "409 naming size {old_size}, the old size sent: the witness holds a tree of that size which this checkpoint of {size} does not extend"
            )
        }))
    }

    fn bad(&self, detail: String) -> WitnessError {
        WitnessError::BadResponse {
            url: self.add_url.clone(),
            detail,
        }
    }

    /// Verified cosignatures by the configured key in a 200 body of signature lines.
    fn cosignatures(&self, text: &str, body: &[u8]) -> Result<Cosignature, WitnessError> {
        let body =
            std::str::from_utf8(body).map_err(|_| self.bad("200 body is not UTF-8".into()))?;
        let v = &self.endpoint.verifier;
        let lines = SignatureLine::parse_trusted_block(body, MAX_SIGNATURES, &[v])
            .map_err(|e| self.bad(format!("200 body: {e}")))?;
        let mut out = Vec::new();
        for l in &lines {
            let c = v
                .verify(text, l)
                .ok_or_else(|| self.bad(format!("cosignature by {v} does not verify")))?;
            out.push(c);
        }
        // Every line verified; the newest is kept.
        out.into_iter()
            .max_by_key(|c| c.timestamp)
            .ok_or_else(|| self.bad(format!("200 answer holds no cosignature by {v}")))
    }
}

/// `text/x.tlog.size`, compared as a media type (case-insensitive, parameters ignored).
fn is_size_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(SIZE_CONTENT_TYPE))
}

fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim()
        .chars()
        .take(300)
        .collect()
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosig::CosignerKey;
    use crate::cosig::tests::with_trailing_bits;

    /// c2sp.org/tlog-witness: "The client MUST ignore any cosignatures from unknown keys." A
    /// 200 body whose other lines are by unknown keys (one Go reads despite non-zero trailing
    /// base64 bits, one not base64 at all) yields the configured witness's cosignature.
    #[test]
    fn a_200_keeps_the_witness_cosignature_whatever_unknown_keys_sent() {
        let w = CosignerKey::generate("w.example/1").unwrap();
        let client = WitnessClient::new(WitnessEndpoint {
            url: "http://127.0.0.1:9".into(),
            verifier: w.verifier(),
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        let text = "log.example/a\n5\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n";
        let stranger = CosignerKey::generate("stranger.example").unwrap();
        let mine = w.cosign(text, 7).unwrap();
        let body = format!(
            "{}\u{2014} other.example !!!\n{mine}",
            with_trailing_bits(&stranger.cosign(text, 1).unwrap())
        );
        let got = client.cosignatures(text, body.as_bytes()).unwrap();
        assert_eq!(got.timestamp, 7);
        // Two valid lines by the witness's key (tlog-witness allows it): the newest is kept.
        let newer = w.cosign(text, 9).unwrap();
        let got = client
            .cosignatures(text, format!("{newer}{mine}").as_bytes())
            .unwrap();
        assert_eq!(got.to_line(), newer);
        // A malformed line that names the witness may be its own: a bad answer.
        let body = format!("{mine}\u{2014} w.example/1 !!!\n");
        assert!(matches!(
            client.cosignatures(text, body.as_bytes()),
            Err(WitnessError::BadResponse { .. })
        ));
    }
}

//! Where a log in the tlog-tiles layout is read from: a tiles API over HTTP(S) (our server's,
//! or any static file server, bucket website or CDN), or a publication target read through its
//! object store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::ACCEPT_ENCODING;
use secrecy::{ExposeSecret, SecretString};

use crate::body::{self, Capped};
use crate::error::RemoteError;
use crate::target::Target;

/// What every request accepts: c2sp.org/tlog-tiles lets a log answer with `Content-Encoding:
/// gzip` without negotiation and says clients SHOULD send both. reqwest (its `gzip` feature)
/// decodes any gzip answer, asked for or not; it would send only `gzip` by itself.
const ACCEPT: &str = "gzip, identity";

/// Reads that may run at once against a network source: they mostly wait, so more than the
/// CPU count keeps the verifier's hashing busy.
const NETWORK_PARALLELISM: usize = 8;

/// Pauses before each further try of a read that failed in a way trying again may cure.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

/// How to reach a tiles API.
#[derive(Default)]
pub struct ClientSettings {
    /// Sent as `Authorization: Bearer <token>` (a server with bearer access).
    pub bearer_token: Option<SecretString>,
    /// Extra CA certificates (PEM) to trust, e.g. a private CA of the server.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and its key in one PEM (a server with mTLS access).
    pub identity_pem: Option<SecretString>,
    /// Per-request timeout; `None` for reqwest's default (none).
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "…"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "…"))
            .field("identity_pem", &self.identity_pem.as_ref().map(|_| "…"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A tiles API over HTTP(S).
pub struct HttpSource {
    /// The client (connection pool, TLS settings).
    client: reqwest::Client,
    /// The log's prefix, ending in `/`.
    base: url::Url,
    /// Sent with every request when set.
    bearer: Option<SecretString>,
}

impl HttpSource {
    /// A source for the log at `base` (`https://host/prefix`).
    pub fn new(base: &str, settings: ClientSettings) -> Result<Self, RemoteError> {
        let bad = |reason: String| RemoteError::BadLocation {
            location: base.to_owned(),
            reason,
        };
        let mut url = url::Url::parse(base).map_err(|e| bad(e.to_string()))?;
        // From here on errors name the URL without its password.
        let location = shown(&url);
        let bad = |reason: String| RemoteError::BadLocation {
            location: location.clone(),
            reason,
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("a tiles API URL starts with http:// or https://".into()));
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        // reqwest uses the process-wide rustls provider: make it the workspace's one.
        onboard_core::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &settings.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| bad(format!("CA certificate: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(id) = &settings.identity_pem {
            let identity = reqwest::Identity::from_pem(id.expose_secret().as_bytes())
                .map_err(|e| bad(format!("client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        if let Some(t) = settings.timeout {
            builder = builder.timeout(t);
        }
        let client = builder
            .build()
            .map_err(|e| bad(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            base: url,
            bearer: settings.bearer_token,
        })
    }

    /// GETs `rel`, trying again after a transport failure, HTTP 429 or a 5xx answer
    /// ([`RETRY_DELAYS`]): one failed read among the many of a verification should not end
    /// it. 404, 403 and other answers are final.
    async fn get(&self, rel: &str) -> Result<Bytes, RemoteError> {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            match self.get_once(rel).await {
                Err((e, true)) => match delays.next() {
                    Some(d) => tokio::time::sleep(*d).await,
                    None => return Err(e),
                },
                r => return r.map_err(|(e, _)| e),
            }
        }
    }

    /// One GET of `rel`; an error says whether trying again may help.
    async fn get_once(&self, rel: &str) -> Result<Bytes, (RemoteError, bool)> {
        let url = self.base.join(rel).map_err(|e| {
            let bad = RemoteError::BadLocation {
                location: rel.to_owned(),
                reason: e.to_string(),
            };
            (bad, false)
        })?;
        let location = shown(&url);
        let mut req = self.client.get(url).header(ACCEPT_ENCODING, ACCEPT);
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t.expose_secret());
        }
        let http = |detail: String| RemoteError::Http {
            location: location.clone(),
            detail,
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| (http(transport_detail(&e)), true))?;
        match resp.status() {
            StatusCode::OK => {
                // At most what `rel` may hold, decided from the announced length when there is
                // one (reqwest announces none for a body it decodes), else as the body comes.
                let cap = body::max_bytes(rel);
                let announced = resp.content_length();
                if announced.is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX)) {
                    return Err((body::too_long(&location, cap), false));
                }
                let mut read = Capped::new(cap, announced);
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .map_err(|e| (http(transport_detail(&e)), true))?
                {
                    if !read.push(&chunk) {
                        return Err((body::too_long(&location, cap), false));
                    }
                }
                Ok(Bytes::from(read.into_inner()))
            }
            StatusCode::NOT_FOUND => Err((
                RemoteError::NotFound {
                    location: location.clone(),
                },
                false,
            )),
            status => {
                let again = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                let body = error_text(resp).await;
                Err(if status == StatusCode::FORBIDDEN {
                    let forbidden = RemoteError::Forbidden {
                        location: location.clone(),
                        detail: body,
                    };
                    (forbidden, false)
                } else {
                    (http(format!("HTTP {status}: {body}")), again)
                })
            }
        }
    }
}

/// The start of an error answer's body, for the message: at most 200 characters, and never
/// more than a few KiB read of a body however long.
async fn error_text(mut resp: reqwest::Response) -> String {
    const READ: usize = 4096;
    let mut read = Vec::new();
    while read.len() < READ {
        match resp.chunk().await {
            Ok(Some(c)) => read.extend_from_slice(&c[..c.len().min(READ - read.len())]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&read);
    text.trim().chars().take(200).collect()
}

/// The innermost cause of a transport error (reqwest's own message names only the URL).
fn transport_detail(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        msg = format!("{msg}: {c}");
        cur = c.source();
    }
    msg
}

/// A place a log in the tlog-tiles layout is read from.
pub enum Source {
    /// A tiles API or static server.
    Http(HttpSource),
    /// A publication target read through its object store (or a directory).
    Store(Target),
}

impl Source {
    /// `http(s)://…` is a tiles API; anything else is a publication target or a directory.
    pub fn parse(location: &str, settings: ClientSettings) -> Result<Self, RemoteError> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Ok(Self::Http(HttpSource::new(location, settings)?))
        } else {
            Ok(Self::Store(Target::parse(location, false)?))
        }
    }

    /// The resource `rel` (`checkpoint`, `tile/…`).
    pub async fn get(&self, rel: &str) -> Result<Bytes, RemoteError> {
        match self {
            Self::Http(h) => h.get(rel).await,
            Self::Store(t) => t.get(rel).await,
        }
    }

    /// The signed checkpoint note.
    pub async fn checkpoint(&self) -> Result<String, RemoteError> {
        let bytes = self.get("checkpoint").await?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RemoteError::Invalid {
            location: "checkpoint".into(),
            detail: "not UTF-8".into(),
        })
    }
}

/// A [`Source`] as a blocking [`audit_log::TileReader`], for the verifier's worker threads:
/// each read runs on the tokio runtime behind `handle`. Use it from a blocking thread
/// (`spawn_blocking`), never from async code.
#[derive(Clone)]
pub struct BlockingReader {
    /// What is read.
    source: Arc<Source>,
    /// The runtime the reads run on.
    handle: tokio::runtime::Handle,
}

impl BlockingReader {
    /// Reads `source` on the runtime behind `handle`.
    pub fn new(source: Arc<Source>, handle: tokio::runtime::Handle) -> Self {
        Self { source, handle }
    }
}

impl audit_log::TileReader for BlockingReader {
    fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
        self.handle
            .block_on(self.source.get(path))
            .map(Vec::from)
            .map_err(RemoteError::into_io)
    }

    fn parallelism(&self) -> usize {
        NETWORK_PARALLELISM
    }
}

/// `url` as errors and logs show it: without the credentials a base URL may carry (a user and
/// password, or a token as the user name), which would otherwise be printed wherever the
/// location is named. In `abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net/…` (object_store's
/// Azure form) the user name is the container, not a credential, and stays.
pub fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    if !matches!(u.scheme(), "abfs" | "abfss") {
        let _ = u.set_username("");
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base URL with credentials in it: errors name the user and host, never the password.
    #[tokio::test]
    async fn errors_name_the_location_without_its_credentials() {
        let source = HttpSource::new(
            "http://auditor:s3cr3t-pw@127.0.0.1:1/log",
            ClientSettings::default(),
        )
        .unwrap();
        let err = source.get("checkpoint").await.unwrap_err().to_string();
        assert!(!err.contains("s3cr3t-pw"), "{err}");
        assert!(!err.contains("auditor"), "{err}");
        assert!(err.contains("http://127.0.0.1:1/log/checkpoint"), "{err}");
    }

    /// An Azure target's container (its URL's user name) is shown; a token as a user name is not.
    #[test]
    fn an_azure_container_is_shown_and_a_token_is_not() {
        let at = |s: &str| shown(&url::Url::parse(s).unwrap());
        let azure = "abfss://logs@acct.dfs.core.windows.net/audit";
        assert_eq!(at(azure), azure);
        assert_eq!(
            at("https://TOKEN@host.example/log"),
            "https://host.example/log"
        );
    }
}

//! A publication target: an object store and a prefix in it, named by a URL
//! (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, `file:///dir`) or a
//! local directory path. Credentials come from the environment the cloud SDKs use (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), through object_store's `from_env` builders.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use crate::body::{self, Capped, Coding};
use crate::error::RemoteError;

/// How long caches may keep what is uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// A tile or bundle: its bytes never change.
    Immutable,
    /// The checkpoint: replaced with every publication.
    Short,
}

/// An object store and the prefix the log lives under in it.
#[derive(Clone)]
pub struct Target {
    /// The store.
    store: Arc<dyn ObjectStore>,
    /// Objects are `prefix/checkpoint`, `prefix/tile/…`.
    prefix: Path,
    /// The location as given, for messages.
    display: String,
    /// Whether the store keeps HTTP metadata (content type, cache lifetime) with objects; the
    /// local file system does not.
    keeps_metadata: bool,
    /// Whether entry bundles are stored gzip-coded with `Content-Encoding: gzip` (a store that
    /// keeps metadata, but Google Cloud Storage: see [`Target::parse_with_options`]).
    gzip_bundles: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.display)
    }
}

fn bad(location: &str, reason: impl Into<String>) -> RemoteError {
    RemoteError::BadLocation {
        location: location.to_owned(),
        reason: reason.into(),
    }
}

/// `builder` with each of `options` whose key parses (case-insensitively) as one of its
/// configuration keys `K` set through `with`; other keys are left to other builders.
fn configured<'a, B, K: std::str::FromStr>(
    builder: B,
    options: &[(&'a str, &'a str)],
    with: impl Fn(B, K, &'a str) -> B,
) -> B {
    options
        .iter()
        .fold(builder, |b, (k, v)| match k.to_ascii_lowercase().parse() {
            Ok(key) => with(b, key, v),
            Err(_) => b,
        })
}

impl Target {
    /// Opens the target named by `location`, with credentials and endpoints from the
    /// environment. A local directory is created when `create_local` is set (publishing) and
    /// must exist otherwise (reading).
    pub fn parse(location: &str, create_local: bool) -> Result<Self, RemoteError> {
        Self::parse_with_options(location, create_local, &[])
    }

    /// [`Target::parse`], with object_store configuration keys (e.g. `aws_endpoint`,
    /// `aws_allow_http`, `aws_access_key_id`) that override the environment.
    pub fn parse_with_options(
        location: &str,
        create_local: bool,
        options: &[(&str, &str)],
    ) -> Result<Self, RemoteError> {
        let Some((scheme, _)) = location.split_once("://") else {
            return Self::local(location, std::path::Path::new(location), create_local);
        };
        let url = url::Url::parse(location).map_err(|e| bad(location, e.to_string()))?;
        let store_err = |e: object_store::Error| bad(location, e.to_string());
        // Entry bundles go gzip-coded to the stores that keep metadata, except GCS: it serves an
        // object stored with `Content-Encoding: gzip` to a request that does not accept gzip
        // decoded and without Content-Length, and object_store 0.14 refuses that answer
        // (apache/arrow-rs-object-store#774), so `onboard audit verify gs://…` could not read
        // them back. Over HTTP GCS would serve them well.
        let gzip_bundles = scheme != "gs";
        let store: Arc<dyn ObjectStore> = match scheme {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| bad(location, "not a local file URL"))?;
                return Self::local(location, &dir, create_local);
            }
            "s3" | "s3a" => {
                let b = AmazonS3Builder::from_env().with_url(location);
                Arc::new(
                    configured(b, options, AmazonS3Builder::with_config)
                        .build()
                        .map_err(store_err)?,
                )
            }
            "gs" => {
                let b = GoogleCloudStorageBuilder::from_env().with_url(location);
                Arc::new(
                    configured(b, options, GoogleCloudStorageBuilder::with_config)
                        .build()
                        .map_err(store_err)?,
                )
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let b = MicrosoftAzureBuilder::from_env().with_url(location);
                Arc::new(
                    configured(b, options, MicrosoftAzureBuilder::with_config)
                        .build()
                        .map_err(store_err)?,
                )
            }
            "http" | "https" => {
                return Err(bad(
                    location,
                    "an HTTP(S) URL is a tiles API to read from, not a publication target",
                ));
            }
            other => {
                return Err(bad(
                    location,
                    format!(
                        "unknown scheme {other:?} (use s3://, gs://, az://, file:// or a directory)"
                    ),
                ));
            }
        };
        let prefix = Path::parse(url.path().trim_matches('/'))
            .map_err(|e| bad(location, format!("prefix: {e}")))?;
        Ok(Self {
            store,
            prefix,
            display: location.to_owned(),
            // The cloud stores keep object metadata (content type, cache control).
            keeps_metadata: true,
            gzip_bundles,
        })
    }

    fn local(location: &str, dir: &std::path::Path, create: bool) -> Result<Self, RemoteError> {
        if create {
            std::fs::create_dir_all(dir)
                .map_err(|e| RemoteError::io(format!("creating {}", dir.display()), e))?;
        } else if !dir.is_dir() {
            return Err(bad(location, "no such directory"));
        }
        let store =
            LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(location, e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::default(),
            display: location.to_owned(),
            keeps_metadata: false,
            gzip_bundles: false,
        })
    }

    /// A target over an already built store (tests, or stores configured in code). With
    /// `keeps_metadata`, objects carry their content type and cache lifetime, and entry
    /// bundles are stored gzip-coded with `Content-Encoding: gzip`.
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        keeps_metadata: bool,
    ) -> Result<Self, RemoteError> {
        Ok(Self {
            store,
            prefix: Path::parse(prefix.trim_matches('/'))
                .map_err(|e| bad(prefix, format!("prefix: {e}")))?,
            display: prefix.to_owned(),
            keeps_metadata,
            gzip_bundles: keeps_metadata,
        })
    }

    /// The object path of `rel` (`checkpoint`, `tile/0/000`).
    fn path(&self, rel: &str) -> Path {
        self.prefix
            .parts()
            .chain(rel.split('/').map(PathPart::from))
            .collect()
    }

    /// Where `rel` is, for messages.
    pub(crate) fn describe(&self, rel: &str) -> String {
        format!("{}/{rel}", self.display.trim_end_matches('/'))
    }

    /// The object `rel`, decoded when its `Content-Encoding` attribute says gzip (entry bundles
    /// published to a store that keeps metadata); never decided by the bytes. At most what
    /// `rel` may hold is read ([`crate::MAX_CHECKPOINT_BYTES`], [`crate::MAX_HASH_TILE_BYTES`],
    /// [`crate::MAX_BUNDLE_BYTES`]): a larger object is [`RemoteError::Invalid`],
    /// refused from its listed size or as soon as the stream passes the cap.
    pub async fn get(&self, rel: &str) -> Result<Bytes, RemoteError> {
        let location = self.describe(rel);
        let result = match self.store.get(&self.path(rel)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(RemoteError::NotFound { location });
            }
            Err(source) => return Err(RemoteError::Store { location, source }),
        };
        let cap = body::max_bytes(rel);
        let encoding = result.attributes.get(&Attribute::ContentEncoding);
        let coding =
            Coding::of(encoding.map(|v| v.as_ref())).map_err(|detail| RemoteError::Invalid {
                location: location.clone(),
                detail,
            })?;
        let stored_cap = coding.stored_cap(cap);
        if result.meta.size > u64::try_from(stored_cap).unwrap_or(u64::MAX) {
            return Err(body::too_long(&location, stored_cap));
        }
        let mut stored = Capped::new(stored_cap, Some(result.meta.size));
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| RemoteError::Store {
                location: location.clone(),
                source,
            })?;
            if !stored.push(&chunk) {
                return Err(body::too_long(&location, stored_cap));
            }
        }
        let stored = stored.into_inner();
        match coding {
            Coding::Identity => Ok(Bytes::from(stored)),
            // Decoding costs little next to the read: inline.
            Coding::Gzip => body::gunzip(&location, &stored, cap).map(Bytes::from),
        }
    }

    /// Writes the object `rel` (atomically: readers see the old object or the new one). In a
    /// store that keeps metadata it carries its content type and cache lifetime, and an entry
    /// bundle is stored gzip-coded with `Content-Encoding: gzip` (tlog-tiles: "Entry bundles
    /// SHOULD be compressed at the HTTP layer … MAY use `Content-Encoding: gzip` with no
    /// negotiation"); hash tiles and the checkpoint are stored as they are.
    pub async fn put(
        &self,
        rel: &str,
        mut data: Bytes,
        lifetime: Lifetime,
    ) -> Result<(), RemoteError> {
        let mut attributes = Attributes::new();
        if self.keeps_metadata {
            let (content_type, cache) = match lifetime {
                Lifetime::Immutable => (
                    "application/octet-stream",
                    "public, max-age=31536000, immutable",
                ),
                Lifetime::Short => ("text/plain; charset=utf-8", "public, max-age=2"),
            };
            attributes.insert(Attribute::ContentType, content_type.into());
            attributes.insert(Attribute::CacheControl, cache.into());
        }
        if self.gzip_bundles && body::is_bundle(rel) {
            // Up to 16 MiB of entries to compress: off the async threads.
            let coded = tokio::task::spawn_blocking(move || body::gzip(&data))
                .await
                .map_err(|e| RemoteError::Conflict(format!("compressing {rel}: {e}")))?
                .map_err(|e| RemoteError::io(format!("compressing {rel}"), e))?;
            data = Bytes::from(coded);
            attributes.insert(Attribute::ContentEncoding, "gzip".into());
        }
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(rel), PutPayload::from(data), opts)
            .await
            .map(|_| ())
            .map_err(|source| RemoteError::Store {
                location: self.describe(rel),
                source,
            })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

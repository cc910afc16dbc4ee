//! A publication target: an object store and a prefix in it, named by a URL
//! (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, `file:///dir`) or a
//! local directory path. Credentials come from the environment the cloud SDKs use (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), through object_store's `from_env` builders.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

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
        })
    }

    /// A target over an already built store (tests, or stores configured in code).
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

    /// The object `rel`.
    pub async fn get(&self, rel: &str) -> Result<Bytes, RemoteError> {
        let location = self.describe(rel);
        let result = match self.store.get(&self.path(rel)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(RemoteError::NotFound { location });
            }
            Err(source) => return Err(RemoteError::Store { location, source }),
        };
        result
            .bytes()
            .await
            .map_err(|source| RemoteError::Store { location, source })
    }

    /// Writes the object `rel` (atomically: readers see the old object or the new one).
    pub async fn put(&self, rel: &str, data: Bytes, lifetime: Lifetime) -> Result<(), RemoteError> {
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

//! Where backups are kept: a local directory, or a prefix in an S3-compatible bucket. The backup
//! code deals in file names and this type; only here do the two kinds of storage differ.
//!
//! Backups and tenant archives hold every password hash and all tenant data: the files this
//! crate writes are created 0600 and its directories 0700, whatever the umask ([`crate::private`]).

use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::TryStreamExt;
use ghostworks_config::S3Settings;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

const S3_SCHEME: &str = "s3://";
const DEFAULT_REGION: &str = "us-east-1";

/// A backup directory or an `s3://bucket/prefix`.
pub enum Destination {
    Local(PathBuf),
    S3 {
        /// `s3://bucket/prefix` without a trailing slash, for messages.
        url: String,
        store: Arc<dyn ObjectStore>,
        prefix: Key,
    },
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "{}", dir.display()),
            Self::S3 { url, .. } => f.write_str(url),
        }
    }
}

/// Refuses a file name that is not a plain name directly in the destination. Names reach this
/// type from manifests, which anyone who can write to the backup directory can plant: one
/// naming `../../etc/passwd` must not make retention delete that file.
pub fn plain_name(name: &str) -> Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        bail!("{name:?} is not a plain file name inside the backup directory");
    }
    Ok(name)
}

/// A local directory that files pass through on their way to or from a [`Destination`]: the
/// backup directory itself (so a local backup is renamed into place, never copied), or a
/// temporary directory for S3, removed when this is dropped.
pub struct Staging {
    dir: PathBuf,
    _temporary: Option<TempDir>,
}

impl Staging {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Destination {
    /// A local directory, or an `s3://bucket[/prefix]` URL reached with the credentials, region
    /// and endpoint of the standard AWS environment variables (`s3`).
    pub fn parse(location: &str, s3: &S3Settings) -> Result<Self> {
        let Some(rest) = location.strip_prefix(S3_SCHEME) else {
            // Anything else URL-like would otherwise become an oddly named local directory.
            if location.contains("://") || location.starts_with("s3:") {
                bail!(
                    "{location}: not a directory or an s3://BUCKET/PREFIX URL (backups go to a \
                     local directory or to S3-compatible storage only)"
                );
            }
            return Ok(Self::Local(PathBuf::from(location)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_bucket {
            bail!(
                "{location}: {bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, \
                 digits, dots and hyphens); write s3://BUCKET/PREFIX"
            );
        }
        let prefix = Key::parse(prefix).map_err(|e| {
            anyhow::anyhow!("{location}: the prefix {prefix:?} is not a valid object path ({e})")
        })?;

        let required = |value: Option<&str>, name: &str, fix: &str| {
            value
                .map(String::from)
                .with_context(|| format!("{name} is not set: {fix} (needed for {location})"))
        };
        let key_id = required(
            s3.access_key_id.as_deref(),
            "AWS_ACCESS_KEY_ID",
            "export the id of an access key that may list, read, write and delete objects in \
             the bucket",
        )?;
        let secret = required(
            s3.secret_access_key.as_ref().map(|s| s.expose()),
            "AWS_SECRET_ACCESS_KEY",
            "export that access key's secret",
        )?;
        let region = s3.region.as_deref().unwrap_or(DEFAULT_REGION);
        // object_store's reqwest client needs rustls' provider installed first.
        ghostworks_telemetry::http_client::install_tls_provider();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            // The default of 10 retries keeps an operator with a wrong endpoint waiting a minute.
            .with_retry(RetryConfig {
                max_retries: 4,
                ..RetryConfig::default()
            })
            // A dump is downloaded in one request, which the default 30 s timeout would cut off
            // (uploads go in 10 MB parts).
            .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(600)));
        if let Some(token) = &s3.session_token {
            builder = builder.with_token(token.expose());
        }
        if let Some(endpoint) = &s3.endpoint {
            let allow_http = plain_http_allowed(endpoint)?;
            builder = builder.with_endpoint(endpoint).with_allow_http(allow_http);
        }
        let store = builder
            .build()
            .with_context(|| format!("{location}: cannot set up the S3 client"))?;
        Ok(Self::S3 {
            url: location.trim_end_matches('/').to_string(),
            store: Arc::new(store),
            prefix,
        })
    }

    /// Where the file `name` is, for messages.
    pub fn location(&self, name: &str) -> String {
        match self {
            Self::Local(dir) => dir.join(name).display().to_string(),
            Self::S3 { url, .. } => format!("{url}/{name}"),
        }
    }

    /// The names of the files directly in the directory or prefix (not in sub-prefixes).
    pub async fn names(&self) -> Result<Vec<String>> {
        match self {
            Self::Local(dir) => {
                let entries = std::fs::read_dir(dir)
                    .with_context(|| format!("cannot read the directory {}", dir.display()))?;
                entries
                    .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
                    .collect()
            }
            Self::S3 { url, store, prefix } => {
                let listed = store
                    .list_with_delimiter(Some(prefix))
                    .await
                    .with_context(|| format!("cannot list {url}"))?;
                Ok(listed
                    .objects
                    .into_iter()
                    .filter_map(|o| o.location.filename().map(str::to_string))
                    .collect())
            }
        }
    }

    /// The contents of a small file (a manifest).
    pub async fn read(&self, name: &str) -> Result<Vec<u8>> {
        plain_name(name)?;
        let read: Result<Vec<u8>> = match self {
            Self::Local(dir) => std::fs::read(dir.join(name)).map_err(Into::into),
            Self::S3 { store, prefix, .. } => {
                async {
                    let body = store.get(&prefix.clone().join(name)).await?.bytes().await?;
                    Ok(body.to_vec())
                }
                .await
            }
        };
        read.with_context(|| format!("cannot read {}", self.location(name)))
    }

    /// A directory to write files in before [`Self::put`] and to fetch them into.
    pub fn staging(&self) -> Result<Staging> {
        match self {
            Self::Local(dir) => {
                crate::private::create_private_dir(dir)?;
                Ok(Staging {
                    dir: dir.clone(),
                    _temporary: None,
                })
            }
            Self::S3 { .. } => {
                let tmp = tempfile::Builder::new()
                    .prefix("ghostworks-backup-")
                    .tempdir()
                    .context("cannot create a temporary directory (TMPDIR) for the S3 transfer")?;
                Ok(Staging {
                    dir: tmp.path().to_path_buf(),
                    _temporary: Some(tmp),
                })
            }
        }
    }

    /// Moves the file `local` (in [`Self::staging`]) in as `name`.
    pub async fn put(&self, local: &Path, name: &str) -> Result<()> {
        plain_name(name)?;
        let put = match self {
            Self::Local(dir) => std::fs::rename(local, dir.join(name)).map_err(anyhow::Error::from),
            Self::S3 { store, prefix, .. } => {
                // Small files go up in one request, large ones as a multipart upload.
                let mut upload = BufWriter::new(store.clone(), prefix.clone().join(name));
                let sent = async {
                    let mut file = tokio::fs::File::open(local).await?;
                    tokio::io::copy(&mut file, &mut upload).await?;
                    upload.shutdown().await
                }
                .await;
                if sent.is_err() {
                    // Otherwise the parts of an unfinished multipart upload are kept (and billed).
                    let _ = upload.abort().await;
                }
                sent.map_err(anyhow::Error::from)
            }
        };
        put.with_context(|| format!("cannot write {}", self.location(name)))
    }

    /// The file `name` as a local file: in place for a directory, downloaded into `staging` from
    /// S3.
    pub async fn fetch(&self, name: &str, staging: &Staging) -> Result<PathBuf> {
        plain_name(name)?;
        match self {
            Self::Local(dir) => Ok(dir.join(name)),
            Self::S3 { store, prefix, .. } => {
                let path = staging.dir().join(name);
                let fetched: Result<()> = async {
                    let mut body = store.get(&prefix.clone().join(name)).await?.into_stream();
                    let mut file = tokio::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .await?;
                    while let Some(chunk) = body.try_next().await? {
                        file.write_all(&chunk).await?;
                    }
                    file.flush().await?;
                    Ok(())
                }
                .await;
                fetched.with_context(|| format!("cannot download {}", self.location(name)))?;
                Ok(path)
            }
        }
    }

    /// Deletes the file `name`; one that is gone already is no error.
    pub async fn delete(&self, name: &str) -> Result<()> {
        plain_name(name)?;
        let deleted = match self {
            Self::Local(dir) => match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r.map_err(anyhow::Error::from),
            },
            Self::S3 { store, prefix, .. } => {
                match store.delete(&prefix.clone().join(name)).await {
                    Err(object_store::Error::NotFound { .. }) => Ok(()),
                    r => r.map_err(anyhow::Error::from),
                }
            }
        };
        deleted.with_context(|| format!("cannot delete {}", self.location(name)))
    }

    /// A warning for the directory and for each of the files `names` that users other than
    /// its owner may open (S3 objects have no modes).
    pub fn loose_modes(&self, names: &[&str]) -> Vec<String> {
        let Self::Local(dir) = self else {
            return Vec::new();
        };
        std::iter::once((dir.clone(), 0o700))
            .chain(names.iter().map(|n| (dir.join(n), 0o600)))
            .filter_map(|(path, wanted)| {
                let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o777;
                (mode & 0o077 != 0).then(|| {
                    format!(
                        "warning: {} has mode {mode:04o}: users other than its owner may read \
                         the backup (every password hash and all tenant data); chmod {wanted:o} {}",
                        path.display(),
                        path.display()
                    )
                })
            })
            .collect()
    }
}

/// Whether `AWS_ENDPOINT_URL` may be plain http: only to this machine, where no network sees
/// the signed requests and the backup's data (an S3-compatible server such as MinIO beside the
/// database). Anything else must be https.
fn plain_http_allowed(endpoint: &str) -> Result<bool> {
    let url = url::Url::parse(endpoint).with_context(|| {
        format!("AWS_ENDPOINT_URL={endpoint:?} is not a URL; write e.g. https://s3.example.com")
    })?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(false),
        "http" if loopback => Ok(true),
        "http" => bail!(
            "AWS_ENDPOINT_URL={endpoint}: plain http is allowed only to a loopback address \
             (127.0.0.1, [::1], localhost); use https:// for any other host"
        ),
        other => bail!("AWS_ENDPOINT_URL={endpoint}: scheme {other:?} is not http or https"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> S3Settings {
        S3Settings::from_vars(
            &vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
    ];

    fn error(location: &str, vars: &[(&str, &str)]) -> String {
        match Destination::parse(location, &env(vars)) {
            Ok(d) => panic!("{location} was accepted as {d}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn local_paths_and_s3_urls_are_told_apart() {
        let local = Destination::parse("backups", &env(&[])).unwrap();
        assert!(matches!(&local, Destination::Local(p) if p == Path::new("backups")));
        assert_eq!(local.location("a.dump"), "backups/a.dump");

        let s3 = Destination::parse("s3://ghostworks-backups/prod/db/", &env(&KEYS)).unwrap();
        let Destination::S3 { url, prefix, .. } = &s3 else {
            panic!("not S3: {s3}")
        };
        assert_eq!(url, "s3://ghostworks-backups/prod/db");
        assert_eq!(prefix.as_ref(), "prod/db");
        assert_eq!(
            s3.location("a.dump"),
            "s3://ghostworks-backups/prod/db/a.dump"
        );
        let root = Destination::parse("s3://ghostworks-backups", &env(&KEYS)).unwrap();
        assert_eq!(root.location("a.dump"), "s3://ghostworks-backups/a.dump");
    }

    #[test]
    fn bad_urls_are_refused() {
        for (location, expected) in [
            ("s3://", "is not an S3 bucket name"),
            ("s3://Upper-Case/x", "is not an S3 bucket name"),
            ("s3://ab/x", "is not an S3 bucket name"),
            ("s3://bucket-/x", "is not an S3 bucket name"),
            ("s3://bucket/a//b", "is not a valid object path"),
            (
                "s3:/bucket/prefix",
                "not a directory or an s3://BUCKET/PREFIX URL",
            ),
            (
                "gs://bucket/prefix",
                "not a directory or an s3://BUCKET/PREFIX URL",
            ),
        ] {
            let e = error(location, &KEYS);
            assert!(e.contains(expected), "{location}: {e}");
        }
    }

    #[tokio::test]
    async fn names_outside_the_destination_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let local = Destination::Local(dir.path().join("backups"));
        let s3 = Destination::parse("s3://ghostworks-backups/prod", &env(&KEYS)).unwrap();
        for name in [
            "../victim",
            victim.to_str().unwrap(),
            "..",
            ".",
            "",
            "a/b",
            "a\\b",
        ] {
            for dest in [&local, &s3] {
                for e in [
                    dest.delete(name).await.unwrap_err(),
                    dest.read(name).await.unwrap_err(),
                ] {
                    let e = format!("{e:#}");
                    assert!(
                        e.contains("is not a plain file name"),
                        "{dest} {name:?}: {e}"
                    );
                }
            }
        }
        assert!(victim.exists());
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let e = error("s3://ghostworks-backups/prod", &[]);
        assert!(e.contains("AWS_ACCESS_KEY_ID is not set"), "{e}");
        assert!(e.contains("s3://ghostworks-backups/prod"), "{e}");
        let e = error(
            "s3://ghostworks-backups/prod",
            &[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")],
        );
        assert!(e.contains("AWS_SECRET_ACCESS_KEY is not set"), "{e}");
    }

    #[test]
    fn plain_http_endpoints_must_be_loopback() {
        for endpoint in [
            "http://127.0.0.1:9000",
            "http://127.0.0.2:9000",
            "http://localhost:9000",
            "http://[::1]:9000",
            "https://s3.example.com",
        ] {
            let mut vars = KEYS.to_vec();
            vars.push(("AWS_ENDPOINT_URL", endpoint));
            Destination::parse("s3://ghostworks-backups/prod", &env(&vars))
                .unwrap_or_else(|e| panic!("{endpoint}: {e:#}"));
        }
        for (endpoint, expected) in [
            ("http://10.0.0.5:9000", "only to a loopback address"),
            ("http://minio.internal:9000", "only to a loopback address"),
            ("http://localhost.example.com", "only to a loopback address"),
            ("ftp://127.0.0.1", "is not http or https"),
            ("not a url", "is not a URL"),
        ] {
            let mut vars = KEYS.to_vec();
            vars.push(("AWS_ENDPOINT_URL", endpoint));
            let e = error("s3://ghostworks-backups/prod", &vars);
            assert!(e.contains(expected), "{endpoint}: {e}");
            assert!(e.contains("AWS_ENDPOINT_URL"), "{endpoint}: {e}");
            assert!(!e.contains("very-secret-value"), "{e}");
        }
    }
}

//! The configuration file of `kms serve --config FILE` (`KMS_CONFIG_FILE`):
//! the configuration document, read at start and written back by every
//! successful `PUT /config`, so that a change survives a restart.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kms::{Kms, KmsBuilder};
use serde_json::{Map, Value};

use crate::document::{self, Document, LIFECYCLE, Lookup, MinVersion, REDACTED};
use crate::state::SharedKms;

/// The variable naming the configuration file (`kms serve --config`
/// overrides it).
pub const CONFIG_FILE_VARIABLE: &str = "KMS_CONFIG_FILE";

/// A configuration file: one JSON configuration document, the shape
/// `PUT /config` takes.
///
/// Written atomically (a temporary file in the same directory, mode 0600,
/// flushed to disk, then renamed over the old one), so a crash leaves the
/// old document or the new one, never half of one. It holds the secrets a
/// document gave and never the server's own (from its environment): a
/// secret shown as `"[REDACTED]"` is left out, and the server's applies
/// again at the next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    /// The file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ConfigFile { path: path.into() }
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration the file holds, built over `base` (where the
    /// variables it leaves out come from: the server's environment), with
    /// `GET /config` describing it; `None` when there is no file yet.
    ///
    /// The document is checked as `PUT /config` checks one, except that
    /// nothing runs yet to compare with: a `rotationPeriod` or
    /// `minDecryptionVersion` it leaves out comes from `base`.
    ///
    /// # Errors
    /// [`kms::Error::Config`] naming `KMS_CONFIG_FILE` when the file cannot
    /// be read or its document is refused (the message says why, never a
    /// value), or the error of building the provider.
    pub async fn load(&self, base: &Lookup) -> kms::Result<Option<SharedKms>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.refused(&format!("cannot read it: {e}"))),
        };
        let doc = Document::parse(&bytes).map_err(|e| self.refused(e.message()))?;
        let provider = doc.provider().to_owned();
        let requested = doc.requested().clone();
        let described = doc.lookup(base).map_err(|e| self.refused(e.message()))?;
        // Nothing runs yet: a lifecycle setting the document leaves out
        // comes from the environment, as without a file.
        let inherited = Arc::clone(base);
        let from_doc = Arc::clone(&described);
        let lookup: Lookup = Arc::new(move |name: &str| {
            if LIFECYCLE.contains(&name) {
                inherited(name)
            } else {
                from_doc(name)
            }
        });
        let mut builder = KmsBuilder::from_lookup(&*lookup)?;
        if let Some(period) = requested.rotation_period {
            builder = builder.rotation_period(period);
        }
        if let MinVersion::Set(version) = requested.min_decryption_version {
            let key_id = builder.config().key_id;
            builder = builder.min_decryption_version(key_id, version);
        }
        let kms = builder.build().await?;
        let settings = document::describe(&provider, &described);
        let shared = SharedKms::new(kms);
        shared.describe(settings);
        Ok(Some(shared))
    }

    fn refused(&self, why: &str) -> kms::Error {
        kms::Error::config(
            CONFIG_FILE_VARIABLE,
            format!("{}: {why}", self.path.display()),
        )
    }

    /// Writes the document that configured `kms` (the body of a
    /// `PUT /config`), atomically, mode 0600.
    pub(crate) fn save(&self, body: &[u8], kms: &Kms) -> std::io::Result<()> {
        let document = persistable(body, kms)?;
        let mut text =
            serde_json::to_vec_pretty(&Value::Object(document)).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".kms-config-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let mut file = builder.tempfile_in(dir)?;
        file.write_all(&text)?;
        file.as_file().sync_all()?;
        file.persist(&self.path).map_err(|e| e.error)?;
        // The rename itself reaches the disk with the directory.
        std::fs::File::open(dir)?.sync_all()
    }
}

/// The document to keep: the `PUT` body without the secrets it showed as
/// `"[REDACTED]"` (the server's own, which never go to the file), with the
/// rotation period and minimum decryption version that are in effect (a
/// document that left them out kept the running server's, which must
/// survive the restart too).
fn persistable(body: &[u8], kms: &Kms) -> std::io::Result<Map<String, Value>> {
    let Ok(Value::Object(mut document)) = serde_json::from_slice::<Value>(body) else {
        return Err(std::io::Error::other("the document is not a JSON object"));
    };
    let redacted = |v: &Value| v.as_str() == Some(REDACTED);
    document.retain(|name, v| !(redacted(v) && document::is_secret_field(name)));
    if let Some(Value::Object(credentials)) = document.get_mut("credentials") {
        credentials.retain(|name, v| {
            !(redacted(v) && document::is_secret_field(&format!("credentials.{name}")))
        });
    }
    let config = kms.config();
    for (field, variable) in [
        ("rotationPeriod", "KMS_ROTATION_PERIOD"),
        ("minDecryptionVersion", "KMS_MIN_DECRYPTION_VERSION"),
    ] {
        match config.get(variable) {
            Some(value) if field == "rotationPeriod" => {
                let millis = value
                    .parse::<u64>()
                    .map_or(Value::String(value), Value::from);
                document.insert(field.to_owned(), millis);
            }
            Some(value) => {
                document.insert(field.to_owned(), Value::String(value));
            }
            None => {
                document.remove(field);
            }
        }
    }
    Ok(document)
}

//! Re-encryption ("rewrap"): decrypt ciphertexts and encrypt them again
//! under the current key version, so that older versions can be retired
//! (see [`KmsBuilder::min_decryption_version`](crate::KmsBuilder::min_decryption_version)).

use std::fmt;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kms_core::{Error, Result, format};
use serde::Serialize;

use crate::client::Kms;

/// Default number of lines read, processed and written together.
pub const DEFAULT_BATCH_LINES: usize = 4096;

/// A progress callback: called after each batch.
pub type ProgressFn = Arc<dyn Fn(&RewrapProgress) + Send + Sync>;

/// How [`Kms::rewrap_lines`] works through its input.
#[derive(Clone)]
#[non_exhaustive]
pub struct RewrapOptions {
    /// Lines read and processed together (at least 1). Default
    /// [`DEFAULT_BATCH_LINES`].
    pub batch_lines: usize,
    /// Tasks a batch is split over (at least 1). Default: the number of
    /// CPUs. With a multi-threaded runtime they run in parallel.
    pub workers: usize,
    /// Called after every batch with the counts so far.
    pub progress: Option<ProgressFn>,
}

impl fmt::Debug for RewrapOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RewrapOptions")
            .field("batch_lines", &self.batch_lines)
            .field("workers", &self.workers)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for RewrapOptions {
    fn default() -> Self {
        RewrapOptions {
            batch_lines: DEFAULT_BATCH_LINES,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            progress: None,
        }
    }
}

impl RewrapOptions {
    /// The defaults with a progress callback.
    #[must_use]
    pub fn with_progress(progress: impl Fn(&RewrapProgress) + Send + Sync + 'static) -> Self {
        RewrapOptions {
            progress: Some(Arc::new(progress)),
            ..RewrapOptions::default()
        }
    }
}

/// Counts so far, given to the progress callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RewrapProgress {
    /// Lines read and written.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines that failed so far.
    pub failed: u64,
}

/// A line that could not be rewrapped (it was written back unchanged).
/// Holds the error's code and message only: never plaintext or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LineFailure {
    /// 1-based line number in the input.
    pub line: u64,
    /// [`Error::code`] of the failure (for example `DECRYPTION_FAILED`).
    pub code: &'static str,
    /// The error's message.
    pub message: String,
}

/// What [`Kms::rewrap_lines`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RewrapReport {
    /// Lines read (every line, including empty and failed ones).
    pub lines: u64,
    /// Lines decrypted and encrypted again under the current version.
    pub rewrapped: u64,
    /// Lines that failed and were written back unchanged.
    pub failed: u64,
    /// Empty (or blank) lines, written back unchanged.
    pub skipped_empty: u64,
    /// Every failed line, in input order.
    pub failures: Vec<LineFailure>,
    /// Wall time of the whole run.
    #[serde(rename = "elapsedMs", serialize_with = "as_millis")]
    pub elapsed: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RewrapReport {
    /// Input lines per second over the whole run.
    #[must_use]
    pub fn lines_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            #[allow(clippy::cast_precision_loss, reason = "line counts far below 2^52")]
            let lines = self.lines as f64;
            lines / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for RewrapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines: {} rewrapped, {} failed (left unchanged), {} empty; {:.2} s, {:.0} lines/s",
            self.lines,
            self.rewrapped,
            self.failed,
            self.skipped_empty,
            self.elapsed.as_secs_f64(),
            self.lines_per_second()
        )
    }
}

/// One input line: its content without the line ending, and the ending.
struct Line {
    content: Vec<u8>,
    ending: &'static [u8],
}

/// What happened to one line.
enum Outcome {
    Rewrapped(String),
    Empty,
    Failed(Error),
}

fn io_error(what: &str, e: &std::io::Error) -> Error {
    Error::provider("rewrap", format!("cannot {what}: {e}"))
}

/// Reads up to `n` lines.
fn read_batch(reader: &mut impl BufRead, n: usize, bytes: &mut u64) -> Result<Vec<Line>> {
    let mut batch = Vec::with_capacity(n);
    while batch.len() < n {
        let mut buf = Vec::new();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error("read the input", &e))?;
        if read == 0 {
            break;
        }
        *bytes += read as u64;
        let ending: &'static [u8] = if buf.ends_with(b"\r\n") {
            b"\r\n"
        } else if buf.ends_with(b"\n") {
            b"\n"
        } else {
            b""
        };
        buf.truncate(buf.len() - ending.len());
        batch.push(Line {
            content: buf,
            ending,
        });
    }
    Ok(batch)
}

impl Kms {
    /// Decrypts a binary-form ciphertext and encrypts the plaintext again,
    /// with the same `aad`, under the current key version.
    ///
    /// A ciphertext already under the current version is encrypted again
    /// too (with a fresh IV): the call does the same thing for every input,
    /// and the result never equals the input. The plaintext is wiped from
    /// memory before returning.
    ///
    /// # Errors
    /// As [`Kms::decrypt`] and [`Kms::encrypt`].
    pub async fn rewrap(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let plaintext = zeroize::Zeroizing::new(self.decrypt(ciphertext, aad).await?);
        self.encrypt(&plaintext, aad).await
    }

    /// [`Kms::rewrap`] for the text form (`kms:v1:...`).
    ///
    /// # Errors
    /// As [`Kms::decrypt_text`] and [`Kms::encrypt_text`].
    pub async fn rewrap_text(&self, ciphertext: &str, aad: &[u8]) -> Result<String> {
        let binary = format::from_text(ciphertext.trim())?;
        Ok(format::to_text(&self.rewrap(&binary, aad).await?))
    }

    /// Rewraps text-form ciphertexts, one per line, from `reader` to
    /// `writer`, in the same order, all with the same `aad`.
    ///
    /// - A line that fails (malformed, not authentic, key missing, retired,
    ///   ...) is written back byte for byte and recorded in
    ///   [`RewrapReport::failures`] with its 1-based line number and error
    ///   code; the run goes on.
    /// - Empty and blank lines are written back unchanged and counted.
    /// - Line endings (`\n`, `\r\n`, none on the last line) are kept;
    ///   whitespace around a ciphertext is dropped.
    /// - Lines are read in batches ([`RewrapOptions::batch_lines`]), each
    ///   batch split over [`RewrapOptions::workers`] Tokio tasks (parallel
    ///   on a multi-threaded runtime); output order is input order.
    ///
    /// The reader and writer are blocking `std::io` types, used from this
    /// task between batches.
    ///
    /// # Errors
    /// Only when reading or writing fails (`Error::Provider` with provider
    /// `rewrap`); failures of single lines are in the report.
    pub async fn rewrap_lines(
        &self,
        mut reader: impl BufRead,
        mut writer: impl Write,
        aad: &[u8],
        options: &RewrapOptions,
    ) -> Result<RewrapReport> {
        let started = Instant::now();
        let aad: Arc<[u8]> = Arc::from(aad);
        let batch_lines = options.batch_lines.max(1);
        let workers = options.workers.max(1);
        let mut report = RewrapReport::default();
        let mut bytes = 0u64;
        loop {
            let batch = read_batch(&mut reader, batch_lines, &mut bytes)?;
            if batch.is_empty() {
                break;
            }
            let outcomes = self.rewrap_batch(&batch, &aad, workers).await;
            for (line, outcome) in batch.iter().zip(outcomes) {
                report.lines += 1;
                let written = match outcome {
                    Outcome::Rewrapped(text) => {
                        report.rewrapped += 1;
                        writer
                            .write_all(text.as_bytes())
                            .and_then(|()| writer.write_all(line.ending))
                    }
                    Outcome::Empty => {
                        report.skipped_empty += 1;
                        writer
                            .write_all(&line.content)
                            .and_then(|()| writer.write_all(line.ending))
                    }
                    Outcome::Failed(e) => {
                        report.failed += 1;
                        report.failures.push(LineFailure {
                            line: report.lines,
                            code: e.code(),
                            message: e.to_string(),
                        });
                        writer
                            .write_all(&line.content)
                            .and_then(|()| writer.write_all(line.ending))
                    }
                };
                written.map_err(|e| io_error("write the output", &e))?;
            }
            if let Some(progress) = &options.progress {
                progress(&RewrapProgress {
                    lines: report.lines,
                    bytes,
                    failed: report.failed,
                });
            }
        }
        writer
            .flush()
            .map_err(|e| io_error("write the output", &e))?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Rewraps a batch, split over `workers` tasks; outcomes in input order.
    async fn rewrap_batch(&self, batch: &[Line], aad: &Arc<[u8]>, workers: usize) -> Vec<Outcome> {
        let chunk = batch.len().div_ceil(workers).max(1);
        if workers == 1 || batch.len() <= chunk {
            let mut out = Vec::with_capacity(batch.len());
            for line in batch {
                out.push(self.rewrap_line(&line.content, aad).await);
            }
            return out;
        }
        let mut tasks = Vec::with_capacity(workers);
        for lines in batch.chunks(chunk) {
            let kms = self.clone();
            let aad = aad.clone();
            let lines: Vec<Vec<u8>> = lines.iter().map(|l| l.content.clone()).collect();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(lines.len());
                for line in &lines {
                    out.push(kms.rewrap_line(line, &aad).await);
                }
                out
            }));
        }
        let mut out = Vec::with_capacity(batch.len());
        for (task, lines) in tasks.into_iter().zip(batch.chunks(chunk)) {
            match task.await {
                Ok(outcomes) => out.extend(outcomes),
                // A panicking task: its lines are failures, the run goes on.
                Err(_) => out.extend(lines.iter().map(|_| {
                    Outcome::Failed(Error::provider("rewrap", "the rewrap task panicked"))
                })),
            }
        }
        out
    }

    async fn rewrap_line(&self, line: &[u8], aad: &[u8]) -> Outcome {
        let Ok(text) = std::str::from_utf8(line) else {
            return Outcome::Failed(Error::malformed("not a kms ciphertext (line is not text)"));
        };
        let text = text.trim();
        if text.is_empty() {
            return Outcome::Empty;
        }
        match self.rewrap_text(text, aad).await {
            Ok(new) => Outcome::Rewrapped(new),
            Err(e) => Outcome::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_core::{Envelope, KeyId, KeyProvider, LiveVersions};
    use kms_testing::MemoryProvider;

    async fn kms() -> (Kms, Arc<MemoryProvider>) {
        let p = Arc::new(MemoryProvider::with_key(KeyId::default()));
        let kms = Kms::builder()
            .provider_arc(p.clone())
            .build()
            .await
            .unwrap();
        (kms, p)
    }

    fn version_of(text: &str) -> String {
        let bin = format::from_text(text).unwrap();
        Envelope::parse(&bin)
            .unwrap()
            .key_version()
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn rewrap_text_moves_to_the_current_version() {
        let (kms, p) = kms().await;
        let old = kms.encrypt_str("secret", b"row:1").await.unwrap();
        p.rotate(&KeyId::default(), &LiveVersions::all())
            .await
            .unwrap();
        kms.clear_cache();
        let new = kms.rewrap_text(&old, b"row:1").await.unwrap();
        assert_eq!(version_of(&old), "1");
        assert_eq!(version_of(&new), "2");
        assert_eq!(kms.decrypt_str(&new, b"row:1").await.unwrap(), "secret");
        // Already current: encrypted again all the same.
        let again = kms.rewrap_text(&new, b"row:1").await.unwrap();
        assert_ne!(again, new);
        assert_eq!(version_of(&again), "2");
        // Wrong AAD fails.
        assert_eq!(
            kms.rewrap_text(&old, b"row:2").await.unwrap_err().code(),
            "DECRYPTION_FAILED"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rewrap_lines_keeps_order_and_reports_failures() {
        let (kms, p) = kms().await;
        let mut input = String::new();
        let mut plain = Vec::new();
        for i in 0..1000 {
            let s = format!("value-{i}");
            input.push_str(&kms.encrypt_str(&s, b"t").await.unwrap());
            input.push('\n');
            plain.push(s);
        }
        p.rotate(&KeyId::default(), &LiveVersions::all())
            .await
            .unwrap();
        kms.clear_cache();
        let mut lines: Vec<String> = input.lines().map(str::to_owned).collect();
        lines[9] = "garbage".into(); // line 10
        lines[499] = String::new(); // line 500, empty
        lines[776] = "kms:v1:AAAA".into(); // line 777
        let input = lines.join("\r\n"); // CRLF, no final newline
        let mut out = Vec::new();
        let options = RewrapOptions {
            batch_lines: 64,
            workers: 3,
            progress: None,
        };
        let report = kms
            .rewrap_lines(input.as_bytes(), &mut out, b"t", &options)
            .await
            .unwrap();
        assert_eq!(report.lines, 1000);
        assert_eq!(report.rewrapped, 997);
        assert_eq!(report.failed, 2);
        assert_eq!(report.skipped_empty, 1);
        let failed: Vec<u64> = report.failures.iter().map(|f| f.line).collect();
        assert_eq!(failed, [10, 777]);
        assert_eq!(report.failures[0].code, "MALFORMED_CIPHERTEXT");
        let out = String::from_utf8(out).unwrap();
        assert!(!out.ends_with('\n'));
        let out: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(out.len(), 1000);
        assert_eq!(out[9], "garbage");
        assert_eq!(out[499], "");
        assert_eq!(out[776], "kms:v1:AAAA");
        for (i, line) in out.iter().enumerate() {
            if [9, 499, 776].contains(&i) {
                continue;
            }
            assert_eq!(version_of(line), "2", "line {}", i + 1);
            assert_eq!(kms.decrypt_str(line, b"t").await.unwrap(), plain[i]);
        }
        assert!(report.to_string().contains("997 rewrapped"));
    }
}

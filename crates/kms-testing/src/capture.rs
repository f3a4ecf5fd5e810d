//! Capturing what code under test records: metrics (through a local
//! [`DebuggingRecorder`]) and tracing events (formatted as JSON).
//!
//! Enabled by the `capture` feature.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

/// A [`MakeWriter`] collecting every formatted event in memory.
///
/// Clones share the same buffer: hand one to the subscriber and read the
/// other with [`LogCapture::contents`].
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl fmt::Debug for LogCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LogCapture").field(&self.contents()).finish()
    }
}

impl LogCapture {
    /// An empty capture.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far (invalid UTF-8 replaced).
    #[must_use]
    pub fn contents(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One recorded metric: name, labels (sorted by key, then value), value.
pub type Metric = (String, Vec<(String, String)>, DebugValue);

/// A metric was recorded, but as another kind than the lookup asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindMismatch {
    /// The metric's name.
    pub name: String,
    /// What was recorded, `Debug`-formatted.
    pub found: String,
}

impl fmt::Display for KindMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is recorded as {}", self.name, self.found)
    }
}

impl std::error::Error for KindMismatch {}

/// What a run recorded.
#[derive(Debug)]
pub struct Captured {
    /// Every metric, in snapshot order.
    pub metrics: Vec<Metric>,
    /// Every tracing event, one JSON object each, in order.
    pub events: Vec<Value>,
    /// The formatted events as written, one JSON line each.
    pub raw: String,
}

impl Captured {
    /// The value of metric `name` with exactly `labels` (in any order).
    #[must_use]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        want.sort();
        self.metrics
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| v)
    }

    /// A counter's value; 0 when it was never recorded.
    ///
    /// # Errors
    /// When the metric was recorded as a gauge or a histogram.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Result<u64, KindMismatch> {
        match self.value(name, labels) {
            Some(DebugValue::Counter(n)) => Ok(*n),
            None => Ok(0),
            Some(other) => Err(mismatch(name, other)),
        }
    }

    /// A histogram's samples; empty when it was never recorded.
    ///
    /// # Errors
    /// When the metric was recorded as a counter or a gauge.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Result<Vec<f64>, KindMismatch> {
        match self.value(name, labels) {
            Some(DebugValue::Histogram(v)) => Ok(v.iter().map(|f| f.0).collect()),
            None => Ok(Vec::new()),
            Some(other) => Err(mismatch(name, other)),
        }
    }

    /// A gauge's value; `None` when it was never recorded.
    ///
    /// # Errors
    /// When the metric was recorded as a counter or a histogram.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Result<Option<f64>, KindMismatch> {
        match self.value(name, labels) {
            Some(DebugValue::Gauge(v)) => Ok(Some(v.0)),
            None => Ok(None),
            Some(other) => Err(mismatch(name, other)),
        }
    }

    /// Every metric of `name`, whatever its labels.
    #[must_use]
    pub fn all_named(&self, name: &str) -> Vec<&Metric> {
        self.metrics.iter().filter(|(n, _, _)| n == name).collect()
    }

    /// Every event of tracing target `target`.
    #[must_use]
    pub fn events(&self, target: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e.get("target").and_then(Value::as_str) == Some(target))
            .collect()
    }
}

fn mismatch(name: &str, found: &DebugValue) -> KindMismatch {
    KindMismatch {
        name: name.to_owned(),
        found: format!("{found:?}"),
    }
}

/// Runs `fut` to completion on a fresh current-thread runtime (time enabled)
/// with a thread-local [`DebuggingRecorder`] and a JSON tracing subscriber at
/// `level` as defaults, and returns its output with what it recorded.
///
/// # Errors
/// When the runtime cannot be built, or a captured line is not JSON.
pub fn observe<F: Future>(level: tracing::Level, fut: F) -> io::Result<(F::Output, Captured)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let capture = LogCapture::new();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_writer(capture.clone())
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let out = {
        let _metrics = metrics::set_default_local_recorder(&recorder);
        let _tracing = tracing::subscriber::set_default(subscriber);
        rt.block_on(fut)
    };
    let metrics = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _, _, value)| {
            let key = ck.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let raw = capture.contents();
    let events = raw
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    Ok((
        out,
        Captured {
            metrics,
            events,
            raw,
        },
    ))
}

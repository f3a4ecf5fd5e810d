//! `cargo xtask bench`: run the criterion benchmarks and summarise them as a
//! markdown table.
//!
//! Criterion 0.8 writes, for every benchmark, a directory
//! `<criterion home>/<group>/<function>/<value>/new/` (missing parts are left
//! out; each part made filename-safe) holding `benchmark.json` (the
//! `BenchmarkId`: `group_id`, `function_id`, `value_str`, `throughput`) and
//! `estimates.json` (`mean.point_estimate` and friends, in nanoseconds).
//! The criterion home is `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`,
//! else `<cargo metadata target_directory>/criterion`; relative paths are
//! relative to the bench package, which is where cargo runs bench binaries.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::cmd::{self, Error, Result};

/// The package that holds the benchmarks, and its directory in the workspace.
const BENCH_PACKAGE: &str = "kms-benches";
const BENCH_PACKAGE_DIR: &str = "benches";

/// Benchmarks whose function id starts with this are the baseline that the
/// other functions of their group are compared to.
const BARE_PREFIX: &str = "bare";

pub(crate) fn run(out: Option<&Path>, criterion_args: &[OsString]) -> Result<()> {
    // Results older than this run (say, of benchmarks a filter left out) are
    // not reported. The slack covers coarse file-system timestamps.
    let started = SystemTime::now()
        .checked_sub(Duration::from_secs(1))
        .unwrap_or(SystemTime::UNIX_EPOCH);

    // `--bench '*'` selects the criterion targets only: the package's lib
    // target is benchmarked by libtest's harness, which rejects criterion's
    // options.
    let mut command = cmd::cargo();
    command.args(["bench", "-p", BENCH_PACKAGE, "--bench", "*"]);
    if !criterion_args.is_empty() {
        command.arg("--").args(criterion_args);
    }
    cmd::run("run the benchmarks", &mut command)?;

    let home = criterion_home()?;
    cmd::step(format!("read criterion results in {}", home.display()));
    let results = load_results(&home, Some(started))?;
    if results.is_empty() {
        let message = format!(
            "the benchmark run wrote no results under {}",
            home.display()
        );
        // A filter, `--list` or `--test` can legitimately measure nothing.
        if criterion_args.is_empty() {
            return Err(Error::new(message));
        }
        cmd::step(format!("note: {message}"));
        return Ok(());
    }

    let mut table = render_table(&results);
    // The per-size comparison with the best bare cipher, timed interleaved
    // (benches/examples/sizes.rs), after a full run.
    if criterion_args.is_empty() {
        let mut sizes = cmd::cargo();
        sizes.args([
            "run",
            "--release",
            "-p",
            BENCH_PACKAGE,
            "--example",
            "sizes",
        ]);
        cmd::step(format!(
            "the facade at every size: {}",
            cmd::display(&sizes)
        ));
        let printed = cmd::output_of(&mut sizes)
            .map_err(|e| Error::new(format!("benches/examples/sizes.rs failed: {e}")))?;
        table.push_str(&printed);
    }
    println!("{table}");
    if let Some(out) = out {
        fs::write(out, &table)
            .map_err(|e| Error::new(format!("could not write {}: {e}", out.display())))?;
        cmd::step(format!("wrote the table to {}", out.display()));
    }
    Ok(())
}

/// Where criterion writes its results, resolved the way criterion does.
fn criterion_home() -> Result<PathBuf> {
    let bench_dir = cmd::workspace_root().join(BENCH_PACKAGE_DIR);
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Ok(bench_dir.join(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(bench_dir.join(target).join("criterion"));
    }
    Ok(cmd::target_dir()?.join("criterion"))
}

/// One measured benchmark.
#[derive(Debug, Clone, PartialEq)]
struct BenchResult {
    group: String,
    function: Option<String>,
    parameter: Option<String>,
    /// Mean time of one iteration, in nanoseconds.
    mean_ns: f64,
    /// Bytes processed by one iteration, when the benchmark declares them.
    bytes: Option<u64>,
}

impl BenchResult {
    fn is_bare(&self) -> bool {
        self.function
            .as_deref()
            .is_some_and(|f| f.starts_with(BARE_PREFIX))
    }
}

/// Reads every `new/benchmark.json` + `new/estimates.json` pair under `home`,
/// skipping those whose estimates are older than `since`.
fn load_results(home: &Path, since: Option<SystemTime>) -> Result<Vec<BenchResult>> {
    let mut dirs = Vec::new();
    find_new_dirs(home, &mut dirs)?;
    let mut results = Vec::new();
    for dir in dirs {
        let estimates = dir.join("estimates.json");
        if let Some(since) = since {
            let modified = fs::metadata(&estimates)
                .and_then(|m| m.modified())
                .map_err(|e| io_error(&estimates, e))?;
            if modified < since {
                continue;
            }
        }
        results.push(read_result(&dir)?);
    }
    Ok(results)
}

/// Collects the `new` directories that hold a `benchmark.json`.
fn find_new_dirs(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        if !entry.file_type().map_err(|e| io_error(&path, e))?.is_dir() {
            continue;
        }
        if entry.file_name() == "new" && path.join("benchmark.json").is_file() {
            found.push(path);
        } else {
            find_new_dirs(&path, found)?;
        }
    }
    Ok(())
}

fn read_result(new_dir: &Path) -> Result<BenchResult> {
    let id_path = new_dir.join("benchmark.json");
    let id = read_json(&id_path)?;
    let estimates_path = new_dir.join("estimates.json");
    let estimates = read_json(&estimates_path)?;

    let group = id
        .get("group_id")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(&id_path, "no `group_id`"))?
        .to_owned();
    let optional_str = |key: &str| id.get(key).and_then(Value::as_str).map(str::to_owned);
    let mean_ns = estimates
        .pointer("/mean/point_estimate")
        .and_then(Value::as_f64)
        .ok_or_else(|| malformed(&estimates_path, "no `mean.point_estimate`"))?;

    Ok(BenchResult {
        group,
        function: optional_str("function_id"),
        parameter: optional_str("value_str"),
        mean_ns,
        bytes: id.get("throughput").and_then(throughput_bytes),
    })
}

/// Bytes per iteration from a serialized `criterion::Throughput`, e.g.
/// `{"Bytes": 1024}` or `{"ElementsAndBytes": {"elements": 1, "bytes": 1024}}`.
fn throughput_bytes(throughput: &Value) -> Option<u64> {
    throughput
        .get("Bytes")
        .or_else(|| throughput.get("BytesDecimal"))
        .or_else(|| throughput.pointer("/ElementsAndBytes/bytes"))
        .and_then(Value::as_u64)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| malformed(path, &e.to_string()))
}

fn io_error(path: &Path, error: std::io::Error) -> Error {
    Error::new(format!("could not read {}: {error}", path.display()))
}

fn malformed(path: &Path, what: &str) -> Error {
    Error::new(format!(
        "unexpected criterion output in {}: {what}",
        path.display()
    ))
}

/// The markdown summary: one row per benchmark, ordered by group, then
/// parameter (numerically where both are numbers), with `bare*` functions
/// first, then the other functions by name.
fn render_table(results: &[BenchResult]) -> String {
    let mut sorted: Vec<&BenchResult> = results.iter().collect();
    sorted.sort_by(|a, b| {
        a.group
            .cmp(&b.group)
            .then_with(|| compare_parameters(a.parameter.as_deref(), b.parameter.as_deref()))
            .then_with(|| b.is_bare().cmp(&a.is_bare()))
            .then_with(|| a.function.cmp(&b.function))
    });

    // The baseline of each (group, parameter): its first `bare*` function.
    let mut bare: HashMap<(&str, Option<&str>), f64> = HashMap::new();
    for result in sorted.iter().filter(|r| r.is_bare()) {
        bare.entry((&result.group, result.parameter.as_deref()))
            .or_insert(result.mean_ns);
    }

    let header = [
        "group",
        "function",
        "parameter",
        "mean",
        "throughput",
        "vs bare",
    ];
    let rows: Vec<[String; 6]> = sorted
        .iter()
        .map(|r| {
            let ratio = bare
                .get(&(r.group.as_str(), r.parameter.as_deref()))
                .filter(|&&base| base > 0.0)
                .map(|base| format!("{:.2}x", r.mean_ns / base));
            [
                cell(&r.group),
                cell(r.function.as_deref().unwrap_or("")),
                cell(r.parameter.as_deref().unwrap_or("")),
                format_time(r.mean_ns),
                r.bytes
                    .and_then(|bytes| format_throughput(bytes, r.mean_ns))
                    .unwrap_or_default(),
                ratio.unwrap_or_default(),
            ]
        })
        .collect();

    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count()).max(3);
        }
    }
    // Text columns are left-aligned, numbers right-aligned.
    let right_aligned = [false, false, true, true, true, true];
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let pad = |text: &str, width: usize, right: bool| {
        if right {
            format!("{text:>width$}")
        } else {
            format!("{text:<width$}")
        }
    };

    let mut table = line(
        header
            .iter()
            .zip(widths)
            .map(|(text, width)| pad(text, width, false))
            .collect(),
    );
    table.push_str(&line(
        widths
            .iter()
            .zip(right_aligned)
            .map(|(&width, right)| {
                if right {
                    format!("{}:", "-".repeat(width.saturating_sub(1)))
                } else {
                    "-".repeat(width)
                }
            })
            .collect(),
    ));
    for row in &rows {
        table.push_str(&line(
            row.iter()
                .zip(widths)
                .zip(right_aligned)
                .map(|((text, width), right)| pad(text, width, right))
                .collect(),
        ));
    }
    table
}

fn compare_parameters(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y).then_with(|| a.cmp(b)),
            _ => a.cmp(b),
        },
        _ => a.cmp(&b),
    }
}

/// Escapes what would break a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn format_time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.2} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn format_throughput(bytes: u64, mean_ns: f64) -> Option<String> {
    const MIB: f64 = 1024.0 * 1024.0;
    if mean_ns.is_nan() || mean_ns <= 0.0 {
        return None;
    }
    let mib_per_s = bytes as f64 / (mean_ns / 1e9) / MIB;
    Some(if mib_per_s < 1024.0 {
        format!("{mib_per_s:.2} MiB/s")
    } else {
        format!("{:.2} GiB/s", mib_per_s / 1024.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "xtask-{name}-{}-{:?}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
            ));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes one benchmark's files the way criterion 0.8 does (see
    /// `criterion::report::BenchmarkId` and `criterion::estimate::Estimates`).
    fn write_bench(
        home: &Path,
        dir: &str,
        group: &str,
        function: Option<&str>,
        value: Option<&str>,
        throughput: Value,
        mean_ns: f64,
    ) {
        let estimate = |point: f64| {
            serde_json::json!({
                "confidence_interval": {
                    "confidence_level": 0.95,
                    "lower_bound": point * 0.99,
                    "upper_bound": point * 1.01
                },
                "point_estimate": point,
                "standard_error": point * 0.005
            })
        };
        let new_dir = home.join(dir).join("new");
        fs::create_dir_all(&new_dir).unwrap();
        let id = serde_json::json!({
            "group_id": group,
            "function_id": function,
            "value_str": value,
            "throughput": throughput,
            "full_id": dir,
            "directory_name": dir,
            "title": dir
        });
        fs::write(new_dir.join("benchmark.json"), id.to_string()).unwrap();
        let estimates = serde_json::json!({
            "mean": estimate(mean_ns),
            "median": estimate(mean_ns),
            "median_abs_dev": estimate(mean_ns / 100.0),
            "slope": estimate(mean_ns),
            "std_dev": estimate(mean_ns / 50.0)
        });
        fs::write(new_dir.join("estimates.json"), estimates.to_string()).unwrap();
        for other in ["sample.json", "tukey.json"] {
            fs::write(new_dir.join(other), "[]").unwrap();
        }
    }

    fn fixture() -> TempDir {
        let tmp = TempDir::new("criterion");
        let home = tmp.0.join("criterion");
        let bytes = |n: u64| serde_json::json!({ "Bytes": n });
        #[rustfmt::skip]
        let benches = [
            ("encrypt/bare_aes_gcm/1024", "encrypt", Some("bare_aes_gcm"), Some("1024"), bytes(1024), 1000.0),
            ("encrypt/kms_env/1024", "encrypt", Some("kms_env"), Some("1024"), bytes(1024), 1080.0),
            ("encrypt/bare_aes_gcm/64", "encrypt", Some("bare_aes_gcm"), Some("64"), bytes(64), 200.0),
            ("encrypt/kms_env/64", "encrypt", Some("kms_env"), Some("64"), bytes(64), 300.0),
            // No bare benchmark at this size: no ratio.
            ("encrypt/kms_env/1048576", "encrypt", Some("kms_env"), Some("1048576"), bytes(1_048_576), 500_000.0),
            ("provider_lookup/cached", "provider_lookup", Some("cached"), None, Value::Null, 45.5),
            ("generate_key", "generate_key", None, None, Value::Null, 2_500_000.0),
        ];
        for (dir, group, function, value, throughput, mean) in benches {
            write_bench(&home, dir, group, function, value, throughput, mean);
        }
        // What criterion writes besides results: reports and a saved baseline.
        fs::create_dir_all(home.join("report")).unwrap();
        fs::write(home.join("report/index.html"), "<html/>").unwrap();
        let base = home.join("encrypt/kms_env/64/base");
        fs::create_dir_all(&base).unwrap();
        fs::write(base.join("benchmark.json"), "not read").unwrap();
        tmp
    }

    #[test]
    fn reads_criterion_results_and_builds_the_table() {
        let tmp = fixture();
        let results = load_results(&tmp.0.join("criterion"), None).unwrap();
        assert_eq!(results.len(), 7);

        let table = render_table(&results);
        // Each line as its trimmed cells joined by `|`.
        let mut rows: Vec<String> = table
            .lines()
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
                cells.join("|")
            })
            .collect();
        let separator = rows.remove(1);
        assert!(
            separator.starts_with("---") && separator.matches("-:").count() == 4,
            "\n{table}"
        );
        let expected = [
            "group|function|parameter|mean|throughput|vs bare",
            "encrypt|bare_aes_gcm|64|200.00 ns|305.18 MiB/s|1.00x",
            "encrypt|kms_env|64|300.00 ns|203.45 MiB/s|1.50x",
            "encrypt|bare_aes_gcm|1024|1.00 µs|976.56 MiB/s|1.00x",
            "encrypt|kms_env|1024|1.08 µs|904.22 MiB/s|1.08x",
            "encrypt|kms_env|1048576|500.00 µs|1.95 GiB/s|",
            "generate_key|||2.50 ms||",
            "provider_lookup|cached||45.50 ns||",
        ];
        assert_eq!(rows, expected, "\n{table}");
        // Columns line up for reading in a terminal.
        let lengths: Vec<usize> = table.lines().map(|l| l.chars().count()).collect();
        assert!(lengths.windows(2).all(|w| w[0] == w[1]), "\n{table}");
    }

    #[test]
    fn skips_results_older_than_the_run() {
        let tmp = fixture();
        let later = SystemTime::now() + Duration::from_secs(3600);
        let results = load_results(&tmp.0.join("criterion"), Some(later)).unwrap();
        assert!(results.is_empty());
    }

    #[test]
    fn a_missing_criterion_directory_has_no_results() {
        let tmp = TempDir::new("empty");
        assert!(
            load_results(&tmp.0.join("criterion"), None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_results_name_the_file() {
        let tmp = TempDir::new("malformed");
        let new_dir = tmp.0.join("g/new");
        fs::create_dir_all(&new_dir).unwrap();
        fs::write(new_dir.join("benchmark.json"), r#"{"group_id": "g"}"#).unwrap();
        fs::write(new_dir.join("estimates.json"), r#"{"median": {}}"#).unwrap();
        let error = load_results(&tmp.0, None).unwrap_err().to_string();
        assert!(error.contains("estimates.json"), "{error}");
        assert!(error.contains("mean.point_estimate"), "{error}");
    }

    #[test]
    fn throughput_variants_and_formatting() {
        use serde_json::json;
        assert_eq!(throughput_bytes(&json!({ "Bytes": 8 })), Some(8));
        assert_eq!(throughput_bytes(&json!({ "BytesDecimal": 9 })), Some(9));
        assert_eq!(
            throughput_bytes(&json!({ "ElementsAndBytes": { "elements": 1, "bytes": 7 } })),
            Some(7)
        );
        assert_eq!(throughput_bytes(&json!({ "Elements": 8 })), None);
        assert_eq!(throughput_bytes(&Value::Null), None);

        assert_eq!(format_time(999.0), "999.00 ns");
        assert_eq!(format_time(1_500.0), "1.50 µs");
        assert_eq!(format_time(3_000_000_000.0), "3.00 s");
        assert_eq!(
            format_throughput(1 << 20, 1e9).as_deref(),
            Some("1.00 MiB/s")
        );
        assert_eq!(
            format_throughput(1 << 30, 5e8).as_deref(),
            Some("2.00 GiB/s")
        );
        assert_eq!(format_throughput(1, 0.0), None);
        assert_eq!(cell("a|b"), "a\\|b");
    }
}

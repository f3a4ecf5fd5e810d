//! `kms rewrap`: re-encrypt text-form ciphertexts, one per line, under the
//! current key version.

use std::fs::{File, Metadata};
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kms::rewrap::{RewrapOptions, RewrapReport};
use kms::{Error, Kms};
use tempfile::NamedTempFile;

/// Failures listed one by one in the summary; the rest are counted.
const LISTED_FAILURES: usize = 100;

/// Symbolic links followed when resolving `--output` (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Arguments of `kms rewrap`.
#[derive(Debug, clap::Args)]
pub(crate) struct RewrapArgs {
    /// Read ciphertexts from this file (default: standard input).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Write the results to this file (default: standard output).
    ///
    /// The results go to a temporary file in FILE's directory
    /// (`.FILE.kms-rewrap-XXXXXX.tmp`), which is flushed, synced and renamed
    /// onto FILE only once every line has been written (also when some
    /// lines failed): FILE is never left half-written. If the run fails, the
    /// temporary file is removed and FILE is untouched; a killed run may
    /// leave the temporary file behind. An existing FILE keeps its
    /// permissions (and, where allowed, its owner and group); a new FILE
    /// gets the permissions a newly created file always got (0666 minus the
    /// umask). When FILE is a symbolic link, the file it points to is
    /// replaced. A FILE that exists but is not a regular file (a FIFO, a
    /// device, /dev/stdout on a pipe) is written directly, as before. FILE must not be the input: the same
    /// file by device and inode (a hard link, or a symbolic link to it) is
    /// refused before anything is written.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The associated data every ciphertext was written with (kept).
    #[arg(long, default_value = "")]
    aad: String,
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::provider("cli", format!("cannot {what} {}: {e}", path.display()))
}

/// The metadata of an open standard stream (`fstat`), if it can be read.
fn stream_metadata(stream: impl AsFd) -> Option<Metadata> {
    let fd = stream.as_fd().try_clone_to_owned().ok()?;
    File::from(fd).metadata().ok()
}

/// Whether `a` and `b` are the same regular file (device and inode).
/// Other kinds (`/dev/null` as both stdin and stdout, pipes) never clash.
fn same_regular_file(a: &Metadata, b: &Metadata) -> bool {
    a.is_file() && b.is_file() && a.dev() == b.dev() && a.ino() == b.ino()
}

/// The path `--output` really names: its symbolic links followed (also a
/// dangling one, whose target is then created, as a plain `open` would).
fn resolve_output(path: &Path) -> Result<PathBuf, Error> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target =
                    std::fs::read_link(&path).map_err(|e| io_error("read the link", &path, &e))?;
                // A relative target is relative to the link's directory; an
                // absolute one replaces the path.
                path = match path.parent() {
                    Some(dir) => dir.join(target),
                    None => target,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(Error::config(
        "--output",
        format!("too many levels of symbolic links: {}", path.display()),
    ))
}

/// The directory of a file path (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Where the results go.
enum Output {
    Stdout,
    /// An existing file that is not a regular file (a FIFO, a device).
    Direct(File),
    /// A temporary file renamed onto `dest` by [`Output::commit`]; removed
    /// when dropped before that.
    Replace {
        temp: NamedTempFile,
        dest: PathBuf,
        existing: Option<Existing>,
    },
}

/// What is kept of the file an output replaces.
struct Existing {
    permissions: std::fs::Permissions,
    uid: u32,
    gid: u32,
}

impl Output {
    /// Opens the output `path`; `existing` is its metadata when it exists.
    fn open(path: &Path, existing: Option<&Metadata>) -> Result<Output, Error> {
        let direct = || {
            let file = File::create(path).map_err(|e| io_error("create", path, &e))?;
            Ok(Output::Direct(file))
        };
        // A FIFO, a device, /dev/stdout on a pipe: written directly.
        if existing.is_some_and(|meta| !meta.is_file()) {
            return direct();
        }
        let dest = resolve_output(path)?;
        // The rename must replace the very file the path names. Links the
        // kernel resolves differently from their text (/proc magic links
        // such as /dev/stdout on a deleted file) are written directly.
        if let Some(meta) = existing {
            let same = std::fs::metadata(&dest)
                .is_ok_and(|d| d.dev() == meta.dev() && d.ino() == meta.ino());
            if !same {
                return direct();
            }
        }
        let Some(name) = dest.file_name() else {
            return Err(Error::config(
                "--output",
                format!("not a file name: {}", dest.display()),
            ));
        };
        let dir = parent_dir(&dest);
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".kms-rewrap-");
        // A new file is created as `File::create` would: 0666 minus the
        // umask (the mode is given to open(2), which applies the umask).
        // Replacing a file: 0600 until `commit` copies the file's own mode,
        // so the temporary file is never more readable than the file.
        let mode = if existing.is_some() { 0o600 } else { 0o666 };
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .rand_bytes(6)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
            .tempfile_in(dir)
            .map_err(|e| io_error("create a temporary file in", dir, &e))?;
        Ok(Output::Replace {
            temp,
            dest,
            existing: existing.map(|meta| Existing {
                permissions: meta.permissions(),
                uid: meta.uid(),
                gid: meta.gid(),
            }),
        })
    }

    /// The writer to give to the rewrap (unbuffered).
    fn writer(&mut self) -> Box<dyn Write + '_> {
        match self {
            Output::Stdout => Box::new(std::io::stdout().lock()),
            Output::Direct(file) => Box::new(file),
            Output::Replace { temp, .. } => Box::new(temp.as_file_mut()),
        }
    }

    /// Puts the finished output in place: the temporary file gets the
    /// previous file's permissions, is synced to disk and renamed onto the
    /// destination, whose directory is then synced too.
    fn commit(self) -> Result<(), Error> {
        let Output::Replace {
            temp,
            dest,
            existing,
        } = self
        else {
            return Ok(());
        };
        if let Some(meta) = &existing {
            // Best effort, as `cp -p` does: only root may give a file away,
            // but the owner may still set a group it belongs to.
            if std::os::unix::fs::fchown(temp.as_file(), Some(meta.uid), Some(meta.gid)).is_err() {
                let _ = std::os::unix::fs::fchown(temp.as_file(), None, Some(meta.gid));
            }
            // After the chown, which may clear set-id bits.
            temp.as_file()
                .set_permissions(meta.permissions.clone())
                .map_err(|e| io_error("set the permissions of", temp.path(), &e))?;
        }
        temp.as_file()
            .sync_all()
            .map_err(|e| io_error("sync", temp.path(), &e))?;
        temp.persist(&dest)
            .map_err(|e| io_error("rename the temporary file onto", &dest, &e.error))?;
        // Make the rename itself durable. Not every file system can sync a
        // directory; the data is already on disk.
        if let Ok(dir) = File::open(parent_dir(&dest)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// A progress bar on standard error when it is a terminal: bytes of the
/// input file, or lines read from standard input.
fn progress_bar(input_len: Option<u64>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match input_len {
        Some(len) => {
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:40}] {bytes}/{total_bytes} {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        }
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// The summary on standard error: counts, throughput, failed lines.
fn summary(report: &RewrapReport) {
    eprintln!("rewrap: {report}");
    for f in report.failures.iter().take(LISTED_FAILURES) {
        eprintln!("  line {}: {}: {}", f.line, f.code, f.message);
    }
    if report.failures.len() > LISTED_FAILURES {
        eprintln!(
            "  ... and {} more failed lines",
            report.failures.len() - LISTED_FAILURES
        );
    }
}

/// Runs `kms rewrap`. Exit code 0 when every non-empty line was rewrapped,
/// 1 when any line failed (those lines are in the output unchanged).
pub(crate) async fn run(kms: &Kms, args: RewrapArgs) -> Result<ExitCode, Error> {
    // What is at the output path now (its links followed by the kernel).
    let dest = match &args.output {
        Some(path) => match std::fs::metadata(path) {
            Ok(meta) => Some((path, Some(meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some((path, None)),
            Err(e) => return Err(io_error("read the metadata of", path, &e)),
        },
        None => None,
    };
    let (reader, input_meta): (Box<dyn std::io::BufRead>, Option<Metadata>) = match &args.input {
        Some(path) => {
            let file = File::open(path).map_err(|e| io_error("open", path, &e))?;
            let meta = file.metadata().ok();
            (Box::new(BufReader::with_capacity(1 << 16, file)), meta)
        }
        None => (
            Box::new(std::io::stdin().lock()),
            stream_metadata(std::io::stdin()),
        ),
    };
    // The output must not be the input: compared by device and inode of the
    // open input, so a hard link or a symbolic link is caught, not only the
    // same path. (Standard output appended to the input file would grow
    // under the reader.)
    let stdout_meta = match &dest {
        Some(_) => None,
        None => stream_metadata(std::io::stdout()),
    };
    let output_meta = match &dest {
        Some((_, existing)) => existing.as_ref(),
        None => stdout_meta.as_ref(),
    };
    if let (Some(i), Some(o)) = (&input_meta, output_meta)
        && same_regular_file(i, o)
    {
        let input = args
            .input
            .as_deref()
            .map_or_else(|| "standard input".to_owned(), |p| p.display().to_string());
        let output = args
            .output
            .as_deref()
            .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
        return Err(Error::config(
            "--output",
            format!(
                "{output} is the input file {input} (same device and inode): \
                 write elsewhere, then move it"
            ),
        ));
    }
    let input_len = args
        .input
        .as_ref()
        .and(input_meta.as_ref())
        .map(Metadata::len);
    let mut output = match dest {
        Some((path, existing)) => Output::open(path, existing.as_ref())?,
        None => Output::Stdout,
    };
    let bar = progress_bar(input_len);
    let mut options = RewrapOptions::default();
    if let Some(bar) = &bar {
        let bar = bar.clone();
        let by_bytes = input_len.is_some();
        options.progress = Some(std::sync::Arc::new(move |p| {
            if by_bytes {
                bar.set_position(p.bytes);
            }
            bar.set_message(format!("{} lines, {} failed", p.lines, p.failed));
        }));
    }
    let report = {
        let writer = BufWriter::with_capacity(1 << 16, output.writer());
        kms.rewrap_lines(reader, writer, args.aad.as_bytes(), &options)
            .await
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // On an error the output is dropped here: a temporary file is removed,
    // and the destination was never touched.
    let report = report?;
    output.commit()?;
    summary(&report);
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rewrites_a_file_and_fails_on_bad_lines() {
        let old = kms::KeyMaterial::generate().to_hex();
        let new = kms::KeyMaterial::generate().to_hex();
        let before = Kms::builder().env_key(old.as_str()).build().await.unwrap();
        let after = Kms::builder()
            .env_key(new.as_str())
            .env_previous_key(old.as_str())
            .build()
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("kms-rewrap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (input, output) = (dir.join("in.txt"), dir.join("out.txt"));
        let good = before.encrypt_str("s", b"a").await.unwrap();
        std::fs::write(&input, format!("{good}\n{good}\n")).unwrap();
        let args = |aad: &str| RewrapArgs {
            input: Some(input.clone()),
            output: Some(output.clone()),
            aad: aad.to_owned(),
        };
        assert_eq!(run(&after, args("a")).await.unwrap(), ExitCode::SUCCESS);
        let out = std::fs::read_to_string(&output).unwrap();
        for line in out.lines() {
            assert_ne!(line, good);
            assert_eq!(after.decrypt_str(line, b"a").await.unwrap(), "s");
        }
        // Wrong AAD: every line fails, is left unchanged, exit code 1.
        assert_eq!(run(&after, args("b")).await.unwrap(), ExitCode::FAILURE);
        assert_eq!(
            std::fs::read_to_string(&output).unwrap(),
            format!("{good}\n{good}\n")
        );
        // The output must not be the input.
        let same = RewrapArgs {
            input: Some(input.clone()),
            output: Some(input.clone()),
            aad: String::new(),
        };
        assert!(matches!(
            run(&after, same).await,
            Err(Error::Config { variable, .. }) if variable == "--output"
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A key rotation: (ciphertexts written before it, the key after it).
    async fn rotated() -> (Kms, Kms) {
        let old = kms::KeyMaterial::generate().to_hex();
        let new = kms::KeyMaterial::generate().to_hex();
        let before = Kms::builder().env_key(old.as_str()).build().await.unwrap();
        let after = Kms::builder()
            .env_key(new.as_str())
            .env_previous_key(old.as_str())
            .build()
            .await
            .unwrap();
        (before, after)
    }

    fn args(input: &Path, output: &Path) -> RewrapArgs {
        RewrapArgs {
            input: Some(input.to_path_buf()),
            output: Some(output.to_path_buf()),
            aad: String::new(),
        }
    }

    /// Names in `dir` of temporary files left by a rewrap.
    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".kms-rewrap-"))
            .collect()
    }

    /// A directory with `in.txt` holding one ciphertext of "s" under the
    /// old key, and the `Kms` that rewraps it.
    async fn one_line_input() -> (Kms, tempfile::TempDir, PathBuf) {
        let (before, after) = rotated().await;
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        let ct = before.encrypt_str("s", b"").await.unwrap();
        std::fs::write(&input, format!("{ct}\n")).unwrap();
        (after, dir, input)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_an_output_that_is_the_input_by_device_and_inode() {
        let (before, after) = rotated().await;
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        let ct = before.encrypt_str("s", b"").await.unwrap();
        let content = format!("{ct}\n{ct}\n");
        std::fs::write(&input, &content).unwrap();
        let hard = dir.path().join("hard-link.txt");
        std::fs::hard_link(&input, &hard).unwrap();
        let soft = dir.path().join("symlink.txt");
        std::os::unix::fs::symlink("in.txt", &soft).unwrap();
        let chain = dir.path().join("symlink-to-hard-link.txt");
        std::os::unix::fs::symlink(&hard, &chain).unwrap();
        for output in [&hard, &soft, &chain] {
            match run(&after, args(&input, output)).await {
                Err(Error::Config { variable, message }) => {
                    assert_eq!(variable, "--output");
                    assert!(message.contains("same device and inode"), "{message}");
                }
                other => panic!("{}: {other:?}", output.display()),
            }
            assert_eq!(std::fs::read_to_string(&input).unwrap(), content);
            assert!(leftovers(dir.path()).is_empty());
        }
        // The other way round too: the input a link to the output.
        match run(&after, args(&soft, &input)).await {
            Err(Error::Config { variable, .. }) => assert_eq!(variable, "--output"),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&input).unwrap(), content);
        assert!(std::fs::symlink_metadata(&soft).unwrap().is_symlink());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_run_leaves_the_output_untouched() {
        let (_, after) = rotated().await;
        let dir = tempfile::tempdir().unwrap();
        // A directory opens, but reading it fails: the rewrap fails as a whole.
        let input = dir.path().join("not-a-file");
        std::fs::create_dir(&input).unwrap();
        let output = dir.path().join("out.txt");
        std::fs::write(&output, "previous content\n").unwrap();
        let err = run(&after, args(&input, &output)).await.unwrap_err();
        assert!(err.to_string().contains("cannot read the input"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&output).unwrap(),
            "previous content\n"
        );
        assert!(leftovers(dir.path()).is_empty());
        // A new output is not created either.
        let fresh = dir.path().join("fresh.txt");
        run(&after, args(&input, &fresh)).await.unwrap_err();
        assert!(!fresh.exists());
        assert!(leftovers(dir.path()).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_output_is_replaced_with_its_mode_and_links_followed() {
        use std::os::unix::fs::PermissionsExt;
        let (after, dir, input) = one_line_input().await;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;

        // An existing file keeps its mode; it is a new inode (renamed onto).
        let output = dir.path().join("out.txt");
        std::fs::write(&output, "old\n").unwrap();
        std::fs::set_permissions(&output, std::fs::Permissions::from_mode(0o640)).unwrap();
        let inode = std::fs::metadata(&output).unwrap().ino();
        assert_eq!(
            run(&after, args(&input, &output)).await.unwrap(),
            ExitCode::SUCCESS
        );
        assert_eq!(mode(&output), 0o640);
        assert_ne!(std::fs::metadata(&output).unwrap().ino(), inode);
        let out = std::fs::read_to_string(&output).unwrap();
        assert_eq!(after.decrypt_str(out.trim_end(), b"").await.unwrap(), "s");

        // A new file gets the mode `File::create` gives (0666 minus the umask).
        let probe = dir.path().join("probe");
        File::create(&probe).unwrap();
        let fresh = dir.path().join("fresh.txt");
        run(&after, args(&input, &fresh)).await.unwrap();
        assert_eq!(mode(&fresh), mode(&probe));

        // A symbolic link stays a link; the file it points to is replaced.
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink("out.txt", &link).unwrap();
        run(&after, args(&input, &link)).await.unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_ne!(std::fs::read_to_string(&output).unwrap(), out);
        assert_eq!(mode(&output), 0o640);
        // A dangling link: its target is created.
        let dangling = dir.path().join("dangling.txt");
        std::os::unix::fs::symlink("target.txt", &dangling).unwrap();
        run(&after, args(&input, &dangling)).await.unwrap();
        assert!(std::fs::symlink_metadata(&dangling).unwrap().is_symlink());
        assert!(dir.path().join("target.txt").is_file());
        assert!(leftovers(dir.path()).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_output_that_is_not_a_regular_file_is_written_directly() {
        use std::os::unix::fs::FileTypeExt;
        let (after, dir, input) = one_line_input().await;
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils) failed");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        run(&after, args(&input, &fifo)).await.unwrap();
        let out = reader.join().unwrap();
        assert_eq!(after.decrypt_str(out.trim_end(), b"").await.unwrap(), "s");
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(leftovers(dir.path()).is_empty());
    }
}

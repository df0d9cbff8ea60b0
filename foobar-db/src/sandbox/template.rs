//! The initialised data directory every sandbox node starts from.
//!
//! `mariadb-install-db` takes seconds, so it runs once per machine and
//! version: the result is cached in the temp dir under a name derived from
//! the server version and the bootstrap script, built in a scratch directory
//! and renamed into place so concurrent test processes never see half of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{SandboxError, ADMIN, APP, APP_DATABASE, MONITOR, REPLICATION, ROOT};

/// The users and the schema every node has. Explicit `@'127.0.0.1'`
/// accounts: under `--skip-name-resolve` the host-named accounts that
/// `mariadb-install-db` creates never match.
fn bootstrap_sql() -> String {
    format!(
        "FLUSH PRIVILEGES;\n\
         CREATE DATABASE IF NOT EXISTS `{db}`;\n\
         CREATE OR REPLACE USER '{ru}'@'127.0.0.1' IDENTIFIED BY '{rp}';\n\
         GRANT ALL PRIVILEGES ON *.* TO '{ru}'@'127.0.0.1' WITH GRANT OPTION;\n\
         CREATE OR REPLACE USER '{au}'@'127.0.0.1' IDENTIFIED BY '{ap}';\n\
         GRANT ALL PRIVILEGES ON `{db}`.* TO '{au}'@'127.0.0.1';\n\
         CREATE OR REPLACE USER '{mu}'@'127.0.0.1' IDENTIFIED BY '{mp}';\n\
         GRANT SLAVE MONITOR, REPLICATION CLIENT, PROCESS ON *.* TO '{mu}'@'127.0.0.1';\n\
         GRANT SELECT ON `foobar_db`.* TO '{mu}'@'127.0.0.1';\n\
         CREATE OR REPLACE USER '{du}'@'127.0.0.1' IDENTIFIED BY '{dp}';\n\
         GRANT SUPER, RELOAD, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, \
         BINLOG ADMIN, SLAVE MONITOR, REPLICATION CLIENT, PROCESS, CONNECTION ADMIN \
         ON *.* TO '{du}'@'127.0.0.1';\n\
         GRANT CREATE, INSERT, DELETE, SELECT ON `foobar_db`.* TO '{du}'@'127.0.0.1';\n\
         CREATE OR REPLACE USER '{lu}'@'127.0.0.1' IDENTIFIED BY '{lp}';\n\
         GRANT REPLICATION SLAVE ON *.* TO '{lu}'@'127.0.0.1';\n",
        db = APP_DATABASE,
        ru = ROOT.user,
        rp = ROOT.password,
        au = APP.user,
        ap = APP.password,
        mu = MONITOR.user,
        mp = MONITOR.password,
        du = ADMIN.user,
        dp = ADMIN.password,
        lu = REPLICATION.user,
        lp = REPLICATION.password,
    )
}

/// Server options shared by bootstrap and every node start.
pub(super) const COMMON_ARGS: &[&str] = &[
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=32M",
    "--performance-schema=OFF",
];

/// Whether `mariadbd` must be told to run as root.
pub(super) fn user_args() -> Vec<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        vec!["--user=root".to_owned()]
    } else {
        Vec::new()
    }
}

pub(super) fn find_binary(name: &str) -> Result<PathBuf, SandboxError> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .chain([
            "/usr/sbin".into(),
            "/usr/local/sbin".into(),
            "/usr/bin".into(),
        ])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| SandboxError::MissingBinary(name.to_owned()))
}

/// The template data directory, created on first use.
pub(super) fn template() -> Result<PathBuf, SandboxError> {
    static TEMPLATE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut slot = TEMPLATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = slot.as_ref() {
        return Ok(path.clone());
    }
    let path = build_template()?;
    *slot = Some(path.clone());
    Ok(path)
}

fn build_template() -> Result<PathBuf, SandboxError> {
    let mariadbd = find_binary("mariadbd")?;
    let install = find_binary("mariadb-install-db")?;
    let version = Command::new(&mariadbd)
        .arg("--version")
        .output()
        .map_err(|e| SandboxError::io("mariadbd --version", e))?;
    let sql = bootstrap_sql();
    let key = fingerprint(&[
        &version.stdout,
        sql.as_bytes(),
        COMMON_ARGS.join(" ").as_bytes(),
    ]);
    let target = std::env::temp_dir().join(format!("foobar-db-sandbox-template-{key:016x}"));
    if target.join("mysql").is_dir() {
        return Ok(target);
    }

    let scratch = std::env::temp_dir().join(format!(
        "foobar-db-sandbox-template-{key:016x}.{}.tmp",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| SandboxError::io("create template dir", e))?;
    let datadir = scratch.join("data");
    let out = Command::new(&install)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .args(user_args())
        .args(COMMON_ARGS)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SandboxError::io("mariadb-install-db", e))?;
    if !out.status.success() {
        return Err(SandboxError::Start {
            node: "template".into(),
            log: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }

    let log = scratch.join("bootstrap.err");
    let mut child = Command::new(&mariadbd)
        .arg("--no-defaults")
        .arg("--bootstrap")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--log-error={}", log.display()))
        .args(user_args())
        .args(COMMON_ARGS)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| SandboxError::io("mariadbd --bootstrap", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(sql.as_bytes())
            .map_err(|e| SandboxError::io("bootstrap script", e))?;
    }
    let status = child
        .wait()
        .map_err(|e| SandboxError::io("mariadbd --bootstrap", e))?;
    if !status.success() {
        return Err(SandboxError::Start {
            node: "template bootstrap".into(),
            log: std::fs::read_to_string(&log).unwrap_or_default(),
        });
    }

    match std::fs::rename(&datadir, &target) {
        Ok(()) => {}
        // Another process won the race: its template is as good as ours.
        Err(_) if target.join("mysql").is_dir() => {}
        Err(e) => return Err(SandboxError::io("install template", e)),
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(target)
}

/// FNV-1a over the inputs: a stable cache key without a hashing dependency.
fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Copies a directory tree (the template into a node's data directory).
pub(super) fn copy_dir(from: &Path, to: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(to).map_err(|e| SandboxError::io("create data dir", e))?;
    let entries = std::fs::read_dir(from).map_err(|e| SandboxError::io("read template", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SandboxError::io("read template", e))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| SandboxError::io("read template", e))?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| SandboxError::io("copy template", e))?;
        }
    }
    Ok(())
}

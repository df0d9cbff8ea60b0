//! The storage directory: account key, certificates, challenge answers
//! for other instances, and the lock that lets one instance at a time
//! talk to the CA.
//!
//! ```text
//! <dir>/account-<directory url>.json   the account (its key included), 0600
//! <dir>/<name>+<name>.pem              private key, then the chain, 0600
//! <dir>/challenges/<token>             HTTP-01 key authorizations
//! <dir>/challenges/<name>.tls-alpn-01.pem   TLS-ALPN-01 certificates
//! <dir>/.lock                          flock(2), held while issuing
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::AcmeError;

/// How often a waiting instance tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub(crate) struct Storage {
    dir: PathBuf,
}

/// Holds the storage lock until dropped (closing the file releases it).
#[derive(Debug)]
pub(crate) struct StorageLock {
    _file: File,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> AcmeError + '_ {
    move |source| AcmeError::Storage {
        path: path.to_path_buf(),
        source,
    }
}

impl Storage {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Creates the directory and its `challenges` subdirectory (0700).
    pub(crate) fn create(&self) -> Result<(), AcmeError> {
        let challenges = self.challenges_dir();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&challenges).map_err(io_error(&challenges))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn challenges_dir(&self) -> PathBuf {
        self.dir.join("challenges")
    }

    /// The account file for this ACME directory URL.
    pub(crate) fn account_path(&self, directory_url: &str) -> PathBuf {
        let tag: String = directory_url
            .trim_start_matches("https://")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("account-{tag}.json"))
    }

    /// The key-and-chain file of a certificate for these (validated,
    /// lower-case DNS) names.
    pub(crate) fn certificate_path(&self, names: &[String]) -> PathBuf {
        self.dir.join(format!("{}.pem", names.join("+")))
    }

    /// Reads a file; `None` if it does not exist.
    pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, AcmeError> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(path)(error)),
        }
    }

    /// Writes a file readable by its owner only (0600), atomically: a
    /// reader sees the old content or the new, never a part.
    pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy());
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let result = (|| {
            let mut file = options.open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map_err(io_error(path))
    }

    /// Removes a file if it is there.
    pub(crate) fn remove(path: &Path) {
        let _ = fs::remove_file(path);
    }

    /// Takes the directory's lock, waiting up to `wait` while another
    /// instance (or another manager in this process) holds it.
    pub(crate) async fn lock(&self, wait: Duration) -> Result<StorageLock, AcmeError> {
        let path = self.dir.join(".lock");
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(io_error(&path))?;
        let started = Instant::now();
        loop {
            match try_lock(&file) {
                Ok(true) => return Ok(StorageLock { _file: file }),
                Ok(false) if started.elapsed() < wait => tokio::time::sleep(LOCK_POLL).await,
                Ok(false) => {
                    return Err(AcmeError::LockTimeout {
                        path,
                        waited: started.elapsed(),
                    })
                }
                Err(error) => return Err(io_error(&path)(error)),
            }
        }
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when held elsewhere.
#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

/// Without flock(2) there is no lock: on such platforms, instances must
/// not share a storage directory.
#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_private_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path().join("acme"));
        storage.create().unwrap();
        let path = storage.certificate_path(&["a.test".to_owned(), "b.test".to_owned()]);
        assert!(path.ends_with("a.test+b.test.pem"));
        Storage::write_private(&path, b"secret").unwrap();
        assert_eq!(
            Storage::read(&path).unwrap().as_deref(),
            Some(&b"secret"[..])
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(Storage::read(&dir.path().join("none")).unwrap(), None);

        let held = storage.lock(Duration::ZERO).await.unwrap();
        let refused = storage.lock(Duration::from_millis(250)).await.unwrap_err();
        assert!(
            matches!(refused, AcmeError::LockTimeout { .. }),
            "{refused}"
        );
        drop(held);
        storage.lock(Duration::ZERO).await.unwrap();
    }
}

//! Replays every committed corpus file and every kept crash of every fuzz
//! target through its check, so that what the fuzzer once found stays
//! checked on the stable toolchain.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(kind: &str, min: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind);
    for (name, check) in foobar_fuzz::TARGETS {
        let found = files(&root.join(name));
        assert!(
            found.len() >= min,
            "{kind}/{name}: {} files, want at least {min}",
            found.len()
        );
        for path in found {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
        }
    }
}

#[test]
fn every_seed_and_corpus_file_passes() {
    replay("corpus", 1);
}

#[test]
fn every_kept_crash_passes() {
    replay("regressions", 0);
}

#[test]
fn empty_and_tiny_inputs_pass() {
    for (_, check) in foobar_fuzz::TARGETS {
        check(b"");
        for b in 0..=255u8 {
            check(&[b]);
            check(&[b, b]);
        }
    }
}

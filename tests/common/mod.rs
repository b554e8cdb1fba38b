//! Helpers shared by integration tests: manifest parsing and fixture paths.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One row of a `MANIFEST.tsv`, by column name.
pub struct Row {
    pub fields: HashMap<String, String>,
}

impl Row {
    pub fn get(&self, column: &str) -> Option<&str> {
        self.fields
            .get(column)
            .map(String::as_str)
            .filter(|v| *v != "-" && !v.is_empty())
    }

    pub fn path(&self) -> &str {
        &self.fields["path"]
    }
}

/// Reads a tab-separated manifest with a header line.
pub fn read_manifest(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("manifest has a header")
        .split('\t')
        .map(str::to_string)
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| Row {
            fields: header
                .iter()
                .cloned()
                .zip(l.split('\t').map(str::to_string))
                .collect(),
        })
        .collect()
}

/// The crate's own fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The shared GDAL corpus beside the checkout, when it is there.
pub fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    p.join("MANIFEST.tsv").is_file().then_some(p)
}

/// Runs the `pixelquery` binary with `args` (and extra environment, AWS credentials removed):
/// (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pixelquery"));
    cmd.args(args);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run pixelquery");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Python interpreter of `.ci/run`'s virtual environment (`PIXELQUERY_PYTHON`), for tests
/// that check PixelQuery's output with real Python libraries (pyarrow, deltalake, xarray...).
///
/// `None` (the test skips, saying so) when the variable is unset; when `PIXELQUERY_REQUIRE_PYTHON`
/// is set (CI sets it) a missing interpreter fails the test instead, so CI never skips silently.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("PIXELQUERY_PYTHON").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        other => {
            if std::env::var_os("PIXELQUERY_REQUIRE_PYTHON").is_some() {
                panic!("PIXELQUERY_PYTHON ({other:?}) is not a Python interpreter, and PIXELQUERY_REQUIRE_PYTHON is set");
            }
            eprintln!(
                "skipped: set PIXELQUERY_PYTHON to .ci/run's venv python (see .ci/python-env)"
            );
            None
        }
    }
}

/// Runs `python -c script args...`; panics with its stderr when it fails. Returns stdout.
pub fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The S3 test server `.ci/s3-server` started (what it exported), or `None` (the test skips,
/// saying so). When `PIXELQUERY_REQUIRE_S3` is set (CI sets it) a missing server fails instead.
#[allow(dead_code)] // not every test binary talks to S3
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Access key id.
    pub key: String,
    /// Secret access key.
    pub secret: String,
}

#[allow(dead_code)]
pub fn s3_server() -> Option<S3Server> {
    let Ok(endpoint) = std::env::var("PIXELQUERY_TEST_S3") else {
        if std::env::var_os("PIXELQUERY_REQUIRE_S3").is_some() {
            panic!("PIXELQUERY_TEST_S3 is not set and PIXELQUERY_REQUIRE_S3 is");
        }
        eprintln!("skipped: no S3 server (run .ci/s3-server start DIR and export what it prints)");
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    Some(S3Server {
        endpoint,
        key: var("PIXELQUERY_TEST_S3_KEY"),
        secret: var("PIXELQUERY_TEST_S3_SECRET"),
    })
}

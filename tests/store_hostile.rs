//! A warehouse written by a hostile co-writer (a shared folder): links planted below it,
//! implausible numbers in its files, a log that claims absurd versions or holds hundreds of
//! thousands of actions, catalog parts stripped of their checksums. Every case is built on
//! a real warehouse and driven through the `pixelquery` CLI as a user would run it: nothing
//! outside the warehouse is read, written or deleted (canaries beside it survive, a link
//! target's bytes never reach the output), each command fails with one clear line (or, for
//! `vacuum`, skips and says so), and memory stays within 3x the log's size + 100 MB.
#![cfg(unix)]

mod store_support;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use pixelquery::store::*;
use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store_support::*;

/// A folder holding the warehouse `W` and, beside it, the folder `outside`.
struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    /// A warehouse with two scenes (two tiles, two bands) written by the library.
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let wh = Warehouse::create(root.join("W"), WarehouseConfig::new(grid())).unwrap();
        ingest(&wh, "s", 0..2).unwrap();
        std::fs::create_dir(root.join("outside")).unwrap();
        Site { _dir: dir, root }
    }

    fn wh(&self) -> PathBuf {
        self.root.join("W")
    }

    fn outside(&self) -> PathBuf {
        self.root.join("outside")
    }

    fn open(&self) -> Warehouse {
        Warehouse::open(self.wh()).unwrap()
    }
}

/// What a finished `pixelquery` run gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// Peak resident memory of the process, in bytes.
    peak_rss: u64,
}

/// Runs `pixelquery args...` and measures its peak resident memory: a thread reads the
/// child's `VmHWM` (the high-water mark of its resident set) from `/proc/PID/status` every
/// millisecond until it exits. (`wait4`'s `ru_maxrss` would not do: a spawned child starts
/// with the parent's high-water mark.) The mark only grows, so a sample misses at most what
/// the last millisecond before exit added.
fn pq(args: &[&std::ffi::OsStr]) -> Run {
    // The command starts as a shell waiting for a line: the sampler reads its status once
    // before it execs pixelquery, so a command that ends within a millisecond still has a
    // sample (exec starts a new high-water mark).
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read _ && exec \"$0\" \"$@\" </dev/null")
        .arg(env!("CARGO_BIN_EXE_pixelquery"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (started, first) = std::sync::mpsc::channel();
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            let mut started = Some(started);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(text) = std::fs::read_to_string(&status) else {
                    break;
                };
                let hwm = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
                peak = peak.max(hwm.unwrap_or(0) * 1024);
                if let Some(s) = started.take() {
                    let _ = s.send(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        })
    };
    let _ = first.recv();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"go\n");
    }
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_rss: sampler.join().unwrap(),
    }
}

fn args<'a>(list: &'a [&'a dyn AsRef<std::ffi::OsStr>]) -> Vec<&'a std::ffi::OsStr> {
    list.iter().map(|a| a.as_ref()).collect()
}

/// A point inside tile x0_y0 of the test grid, in its CRS.
const POINT: &str = "500055,3999945";

fn query(wh: &Path, extra: &[&str]) -> Run {
    let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"query",
        &wh,
        &"--point",
        &POINT,
        &"--crs",
        &"EPSG:32633",
        &"--bands",
        &"B04",
    ];
    for e in extra {
        a.push(e);
    }
    pq(&args(&a))
}

fn cmd(name: &str, wh: &Path) -> Run {
    pq(&args(&[&name, &wh]))
}

/// A failure reported as exactly one `error:` line that contains every `needle`.
fn assert_one_line_error(r: &Run, what: &str, needles: &[&str]) {
    assert_eq!(r.code, 2, "{what}: exit {} ({})", r.code, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: {}", r.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "{what}: {n:?} not in {}", lines[0]);
    }
}

/// Sets a file's modification time 30 days back (older than vacuum's default window).
fn age(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(30 * 86_400))
        .unwrap();
}

/// Every file below `dir` with its bytes.
fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Fills `outside` with old files of every kind of name, a fragment-like one included.
fn plant_canaries(outside: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let names = [
        "notes.txt",
        "data.parquet",
        "deep/sub/file.arrow",
        "x0_y0/B04/S2_20231114T221320Z_0123456789abcdef.arrow",
        "kind=fragment/part-20231114T221320Z-0123456789abcdef.parquet",
    ];
    for n in names {
        let p = outside.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("canary {n}")).unwrap();
        age(&p);
    }
    snapshot_tree(outside)
}

#[test]
fn vacuum_and_compact_never_go_through_a_linked_fragments_folder() {
    let site = Site::new();
    let canaries = plant_canaries(&site.outside());
    // The co-writer moves the fragments away and links the folder to another place.
    std::fs::rename(site.wh().join("fragments"), site.root.join("moved")).unwrap();
    symlink(site.outside(), site.wh().join("fragments")).unwrap();

    let r = cmd("vacuum", &site.wh());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("skipped: ")
            && r.stdout
                .contains("fragments (a symbolic link, not followed)"),
        "{}",
        r.stdout
    );
    assert_eq!(snapshot_tree(&site.outside()), canaries, "vacuum");
    let report = vacuum(&site.open(), Duration::ZERO).unwrap();
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].reason, SkipReason::Link);

    let link = site.wh().join("fragments");
    let link = link.to_str().unwrap();
    let r = pq(&args(&[&"compact", &site.wh(), &"--period", &"all"]));
    assert_one_line_error(&r, "compact", &[link, "symbolic link"]);
    assert_one_line_error(&query(&site.wh(), &[]), "query", &[link, "symbolic link"]);
    assert_eq!(
        snapshot_tree(&site.outside()),
        canaries,
        "compact and query"
    );

    let r = cmd("verify", &site.wh());
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("symbolic link"), "{}", r.stdout);
}

#[test]
fn vacuum_deletes_only_its_own_names_below_fragments() {
    let site = Site::new();
    let canaries = plant_canaries(&site.outside());
    let wh = site.open();
    let frag = site
        .wh()
        .join(&wh.snapshot(None).unwrap().fragments()[0].path);
    let band_dir = frag.parent().unwrap().to_path_buf();
    // A link to the outside folder inside a band folder, foreign files, and one real orphan
    // fragment (a copy under a fresh fragment name): only the orphan goes.
    symlink(site.outside(), band_dir.join("elsewhere")).unwrap();
    symlink(
        site.outside().join("notes.txt"),
        band_dir.join("S2_20231114T221320Z_00000000000000aa.arrow"),
    )
    .unwrap();
    let foreign = [band_dir.join("README.txt"), band_dir.join("x.parquet")];
    for f in &foreign {
        std::fs::write(f, b"someone else's").unwrap();
        age(f);
    }
    let orphan = band_dir.join("S2_20231114T221320Z_00000000000000bb.arrow");
    std::fs::copy(&frag, &orphan).unwrap();
    age(&orphan);

    let r = cmd("vacuum", &site.wh());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("deleted 1 files"), "{}", r.stdout);
    assert_eq!(
        r.stdout.matches("skipped: ").count(),
        4,
        "two links and two foreign names: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("not a name PixelQuery writes"),
        "{}",
        r.stdout
    );
    assert!(!orphan.exists());
    assert!(foreign.iter().all(|f| f.exists()));
    assert_eq!(snapshot_tree(&site.outside()), canaries);
    // The warehouse still reads whole.
    check_snapshot(&site.open().snapshot(None).unwrap());
}

#[test]
fn fragment_links_are_refused_and_their_targets_never_shown() {
    let site = Site::new();
    let wh = site.open();
    let snap = wh.snapshot(None).unwrap();
    let e = snap
        .fragments()
        .iter()
        .find(|e| e.tile.col == 0 && e.band == "B04")
        .unwrap()
        .clone();
    let frag = site.wh().join(&e.path);
    let frag_str = frag.to_str().unwrap().to_string();

    // A link to a secret file: its bytes and its size never reach the output.
    let secret = site.outside().join("secret.txt");
    let body = "TOP-SECRET-CANARY ".repeat(700);
    std::fs::write(&secret, &body).unwrap();
    let good = std::fs::read(&frag).unwrap();
    std::fs::remove_file(&frag).unwrap();
    symlink(&secret, &frag).unwrap();
    for r in [query(&site.wh(), &[]), query(&site.wh(), &["--physical"])] {
        assert_one_line_error(&r, "query via link", &[&frag_str, "symbolic link"]);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(!all.contains("TOP-SECRET") && !all.contains(&body.len().to_string()));
    }
    assert!(matches!(snap.read_fragment(&e), Err(Error::Symlink { .. })));

    // A link to a valid copy of the fragment elsewhere is refused just the same.
    let copy = site.outside().join("copy.arrow");
    std::fs::write(&copy, &good).unwrap();
    std::fs::remove_file(&frag).unwrap();
    symlink(&copy, &frag).unwrap();
    assert_one_line_error(
        &query(&site.wh(), &[]),
        "query via link to a copy",
        &[&frag_str, "symbolic link"],
    );
    let report = verify(&wh);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Link && p.path == frag),
        "{:?}",
        report.problems
    );

    // The warehouse folder itself may be a link: the user put it there.
    std::fs::remove_file(&frag).unwrap();
    std::fs::write(&frag, &good).unwrap();
    let alias = site.root.join("alias");
    symlink(site.wh(), &alias).unwrap();
    let r = query(&alias, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(cmd("verify", &alias).code, 0);
}

#[test]
fn a_linked_log_or_catalog_is_refused() {
    let site = Site::new();
    let log = site.wh().join("catalog/_delta_log");
    let copy = site.outside().join("log");
    std::fs::rename(&log, &copy).unwrap();
    symlink(&copy, &log).unwrap();
    let needle = log.to_str().unwrap();
    for name in ["info", "verify", "vacuum"] {
        let r = cmd(name, &site.wh());
        assert_one_line_error(&r, name, &[needle, "symbolic link"]);
    }
    assert_one_line_error(&query(&site.wh(), &[]), "query", &[needle]);
}

/// The bytes of `pixelquery.json` with `grid` as its grid.
fn config_with(grid: &str) -> String {
    format!(r#"{{"format_version":3,"grid":{grid},"compression":"zstd","crop":true}}"#)
}

#[test]
fn implausible_grids_are_one_error_from_info_query_and_verify() {
    let site = Site::new();
    let cfg = site.wh().join("pixelquery.json");
    for (grid, field) in [
        (
            r#"{"epsg":32633,"origin_x":500000,"origin_y":4000000,"tile_size":0}"#,
            "grid.tile_size",
        ),
        (
            r#"{"epsg":32633,"origin_x":500000,"origin_y":4000000,"tile_size":-3840}"#,
            "grid.tile_size",
        ),
        (
            r#"{"epsg":32633,"origin_x":500000,"origin_y":4000000,"tile_size":1e300}"#,
            "grid.tile_size",
        ),
        (
            r#"{"epsg":32633,"origin_x":1e308,"origin_y":4000000,"tile_size":160}"#,
            "grid.origin",
        ),
        (
            r#"{"epsg":32633,"origin_x":500000,"origin_y":-1e308,"tile_size":160}"#,
            "grid.origin",
        ),
        (
            r#"{"epsg":999999,"origin_x":500000,"origin_y":4000000,"tile_size":160}"#,
            "grid.epsg",
        ),
    ] {
        std::fs::write(&cfg, config_with(grid)).unwrap();
        assert_one_line_error(&query(&site.wh(), &[]), grid, &["pixelquery.json", field]);
        for name in ["info", "verify"] {
            let r = cmd(name, &site.wh());
            assert_one_line_error(&r, grid, &["pixelquery.json", field]);
        }
    }
    std::fs::write(
        &cfg,
        config_with(r#"{"epsg":32633,"origin_x":500000,"origin_y":4000000,"tile_size":160}"#),
    )
    .unwrap();
    assert_eq!(query(&site.wh(), &[]).code, 0);
}

// ---- the catalog, rewritten as a co-writer with a Parquet library would ----

/// The JSON lines of the next commit, written as the log's next version.
fn append_commit(wh: &Path, lines: &[String]) -> PathBuf {
    let latest = Warehouse::open(wh).unwrap().latest_version().unwrap();
    let path = wh.join(format!("catalog/_delta_log/{:020}.json", latest + 1));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn xxh3(bytes: &[u8]) -> String {
    format!("xxh3:{:016x}", twox_hash::XxHash3_64::oneshot(bytes))
}

/// An `add` action for a part file of the table.
fn add_line(rel: &str, bytes: &[u8], tags: Option<serde_json::Value>) -> String {
    let mut add = serde_json::json!({
        "path": rel,
        "partitionValues": {"kind": "fragment"},
        "size": bytes.len(),
        "modificationTime": 1_700_000_000_000i64,
        "dataChange": true,
    });
    if let Some(t) = tags {
        add["tags"] = t;
    }
    serde_json::json!({ "add": add }).to_string()
}

fn remove_line(rel: &str) -> String {
    serde_json::json!({"remove": {"path": rel, "deletionTimestamp": 1_700_000_000_000i64, "dataChange": true}})
        .to_string()
}

/// The live fragment part (path relative to the table) and its bytes.
fn fragment_part(wh: &Path) -> (String, Vec<u8>) {
    let snap = Warehouse::open(wh).unwrap().snapshot(None).unwrap();
    let part = snap
        .parts()
        .iter()
        .find(|p| p.kind == PartKind::Fragment)
        .unwrap()
        .path
        .clone();
    let bytes = std::fs::read(wh.join(&part)).unwrap();
    (part.trim_start_matches("catalog/").to_string(), bytes)
}

/// Rewrites the fragment part with `change` applied to its rows and commits the swap, with
/// a correct size and checksum: a well-formed commit of hostile content.
fn rewrite_fragment_rows(wh: &Path, change: impl Fn(&RecordBatch) -> RecordBatch) -> String {
    let (old, bytes) = fragment_part(wh);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| change(&b.unwrap())).collect();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batches[0].schema(), None).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    let rel = "kind=fragment/part-20240101T000000Z-00000000000000ff.parquet".to_string();
    std::fs::write(wh.join("catalog").join(&rel), &out).unwrap();
    let tags = serde_json::json!({"pixelquery.checksum": xxh3(&out)});
    append_commit(wh, &[remove_line(&old), add_line(&rel, &out, Some(tags))]);
    format!("catalog/{rel}")
}

/// `batch` with column `name` replaced.
fn with_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
    let schema = batch.schema();
    let i = schema.index_of(name).unwrap();
    let mut columns = batch.columns().to_vec();
    columns[i] = array;
    RecordBatch::try_new(schema, columns).unwrap()
}

#[test]
fn implausible_catalog_rows_are_one_error_naming_the_part_and_field() {
    type Spoil = fn(&RecordBatch) -> RecordBatch;
    let cases: [(&str, Spoil, &str); 4] = [
        (
            "resolution NaN",
            |b| {
                with_column(
                    b,
                    "resolution",
                    Arc::new(Float64Array::from(vec![f64::NAN; b.num_rows()])),
                )
            },
            "resolution NaN",
        ),
        (
            "window outside the tile",
            |b| {
                with_column(
                    b,
                    "window_col",
                    Arc::new(Int32Array::from(vec![1000; b.num_rows()])),
                )
            },
            "is not inside the 16x16 tile",
        ),
        (
            "more valid pixels than pixels",
            |b| {
                with_column(
                    b,
                    "valid_count",
                    Arc::new(Int64Array::from(vec![i64::MAX; b.num_rows()])),
                )
            },
            "exceeds the 256 pixels",
        ),
        (
            "valid minimum infinite",
            |b| {
                with_column(
                    b,
                    "valid_min",
                    Arc::new(Float64Array::from(vec![f64::NEG_INFINITY; b.num_rows()])),
                )
            },
            "valid_min is not finite",
        ),
    ];
    for (what, spoil, reason) in cases {
        let site = Site::new();
        let part = rewrite_fragment_rows(&site.wh(), spoil);
        assert_one_line_error(&query(&site.wh(), &[]), what, &[&part, reason]);
        assert_one_line_error(&cmd("info", &site.wh()), what, &[&part, reason]);
        let r = cmd("verify", &site.wh());
        assert_eq!(r.code, 1, "{what}: {}", r.stdout);
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains(&part) && l.contains(reason)),
            "{what}: {}",
            r.stdout
        );
    }
}

#[test]
fn implausible_profiles_are_one_error_naming_the_commit_and_field() {
    let site = Site::new();
    let commit1 = std::fs::read_to_string(
        site.wh()
            .join("catalog/_delta_log/00000000000000000001.json"),
    )
    .unwrap();
    let meta_line = commit1
        .lines()
        .find(|l| l.starts_with(r#"{"metaData""#))
        .unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(meta_line).unwrap();
    let config = &mut meta["metaData"]["configuration"];
    let mut products: serde_json::Value =
        serde_json::from_str(config["pixelquery.products"].as_str().unwrap()).unwrap();
    products["S2"]["bands"][0]["scale"] = 1e308.into();
    config["pixelquery.products"] = products.to_string().into();
    let commit = append_commit(&site.wh(), &[meta.to_string()]);
    let commit = commit.to_str().unwrap();
    let needles = [commit, "product \"S2\"", "scale 1e308"];
    assert_one_line_error(&query(&site.wh(), &["--physical"]), "query", &needles);
    assert_one_line_error(&cmd("info", &site.wh()), "info", &needles);
    let r = cmd("verify", &site.wh());
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("scale 1e308"), "{}", r.stdout);
}

#[test]
fn part_checksums_are_required_and_never_printed() {
    let site = Site::new();
    let (rel, bytes) = fragment_part(&site.wh());
    let path = format!("catalog/{rel}");
    // The co-writer re-adds the part without its checksum tag.
    append_commit(&site.wh(), &[add_line(&rel, &bytes, None)]);
    let needles = [path.as_str(), "no valid checksum"];
    assert_one_line_error(&query(&site.wh(), &[]), "query", &needles);
    assert_one_line_error(&cmd("info", &site.wh()), "info", &needles);
    let report = verify(&site.open());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Checksum && p.detail.contains(&path)),
        "{:?}",
        report.problems
    );

    // A wrong checksum: the error says it differs and shows neither value.
    let site = Site::new();
    let (rel, bytes) = fragment_part(&site.wh());
    let planted = "xxh3:0123456789abcdef";
    append_commit(
        &site.wh(),
        &[add_line(
            &rel,
            &bytes,
            Some(serde_json::json!({"pixelquery.checksum": planted})),
        )],
    );
    for r in [
        query(&site.wh(), &[]),
        cmd("info", &site.wh()),
        cmd("verify", &site.wh()),
    ] {
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(all.contains("checksum differs"), "{all}");
        assert!(
            !all.contains("0123456789abcdef") && !all.contains(&xxh3(&bytes)[5..]),
            "{all}"
        );
    }
}

/// Total size of the log folder.
fn log_bytes(wh: &Path) -> u64 {
    std::fs::read_dir(wh.join("catalog/_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// The issue's bound: 3x the log's size + 100 MB.
fn assert_bounded(r: &Run, what: &str, log: u64) {
    let limit = 3 * log + (100 << 20);
    assert!(r.peak_rss > 0, "{what}: no memory sample");
    assert!(
        r.peak_rss <= limit,
        "{what}: peak RSS {} MB, limit {} MB",
        r.peak_rss >> 20,
        limit >> 20
    );
}

#[test]
fn far_versions_are_one_problem_each_within_bounded_memory() {
    let site = Site::new();
    let log = site.wh().join("catalog/_delta_log");
    let latest = site.open().latest_version().unwrap();
    let commit1 = log.join("00000000000000000001.json");
    std::fs::copy(&commit1, log.join("18446744073709551615.json")).unwrap();
    std::fs::copy(&commit1, log.join("09223372036854775807.json")).unwrap();
    let r = cmd("verify", &site.wh());
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let problems: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("problem:"))
        .collect();
    assert_eq!(problems.len(), 2, "{}", r.stdout);
    assert!(
        problems.iter().any(|p| p.contains(&format!(
            "versions {} to 9223372036854775806 are missing",
            latest + 1
        ))),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("18446744073709551615.json") && p.contains("beyond")),
        "{problems:?}"
    );
    assert_bounded(&r, "verify", log_bytes(&site.wh()));
    // Readers see the unbroken run of commits, as before.
    let r = pq(&args(&[&"info", &site.wh(), &"--json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let info: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(info["latest_version"], latest);
    assert_eq!(query(&site.wh(), &[]).code, 0);
}

#[test]
fn a_commit_of_200k_adds_fails_every_command_within_bounded_memory() {
    let site = Site::new();
    let lines: Vec<String> = (0..200_000u64)
        .map(|i| {
            let rel = format!("kind=fragment/part-20240101T000000Z-{i:016x}.parquet");
            add_line(
                &rel,
                b"0123456789",
                Some(serde_json::json!({"pixelquery.checksum": "xxh3:0123456789abcdef"})),
            )
        })
        .collect();
    append_commit(&site.wh(), &lines);
    let log = log_bytes(&site.wh());
    assert!(log > 40 << 20, "a log of {log} bytes");
    let runs = [
        ("info", cmd("info", &site.wh())),
        ("query", query(&site.wh(), &[])),
        ("verify", cmd("verify", &site.wh())),
        ("vacuum", cmd("vacuum", &site.wh())),
        ("compact", cmd("compact", &site.wh())),
    ];
    for (what, r) in &runs {
        assert_bounded(r, what, log);
        assert_ne!(r.code, 0, "{what}");
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("00000000000000000003.json") && all.contains("more than"),
            "{what}: {all}"
        );
        eprintln!(
            "{what}: peak RSS {} MB for a {} MB log",
            r.peak_rss >> 20,
            log >> 20
        );
    }
    // A commit larger than any writer makes is refused before it is read.
    let site = Site::new();
    let f = append_commit(&site.wh(), &[]);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let r = cmd("info", &site.wh());
    assert_one_line_error(
        &r,
        "sparse huge commit",
        &[f.to_str().unwrap(), "a commit may have"],
    );
    assert!(r.peak_rss < 100 << 20, "{} MB", r.peak_rss >> 20);
}

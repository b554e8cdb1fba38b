//! The CLI on warehouses in object storage, against a real S3 server (SeaweedFS, started on
//! 127.0.0.1 by `.ci/run` through `.ci/s3-server`; the tests skip without `PIXELQUERY_TEST_S3`
//! unless `PIXELQUERY_REQUIRE_S3` is set, as CI does): the same queries as on a local folder,
//! byte for byte; four sharded writers at once; writers killed at random points.

mod common;
mod s3_support;

use s3_support::{cli, ingest_args, ok, queries, s3_env, url, write_scenes, ORIGIN};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn every_command_on_s3_gives_the_bytes_a_local_warehouse_gives() {
    let Some(env) = s3_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scenes: Vec<String> = write_scenes(&dir.path().join("scenes"), 5)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let remote = url("cli");
    let local = dir.path().join("local").display().to_string();
    // Two runs each (two commits), so compact has something to merge.
    for wh in [remote.as_str(), local.as_str()] {
        ok(&ingest_args(wh, &scenes[..3], &[]), &env);
        ok(&ingest_args(wh, &scenes[3..], &["--json"]), &env);
    }
    let expected = queries(&local, &dir.path().join("q-local"), &env);
    assert_eq!(queries(&remote, &dir.path().join("q-s3"), &env), expected);

    // Reads are ranged requests, counted.
    let (x, y) = (ORIGIN.0 + 455.0, ORIGIN.1 - 305.0);
    let (code, _, err) = cli(
        &[
            "query",
            &remote,
            "--point",
            &format!("{x},{y}"),
            "--crs",
            "32652",
            "--io-stats",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(stats["warehouse"], remote.as_str());
    assert!(stats["requests"].as_u64().unwrap() > 0, "{stats}");

    let info = ok(&["info", &remote], &env);
    assert!(info.contains("scenes      5"), "{info}");
    for wh in [remote.as_str(), local.as_str()] {
        let out = ok(&["compact", wh, "--period", "all"], &env);
        assert!(out.contains("compacted"), "{out}");
        ok(&["vacuum", wh, "--older-than", "0"], &env);
        let v = ok(&["verify", wh], &env);
        assert!(v.contains("0 unreferenced files, 0 problems"), "{v}");
    }
    // After compaction and vacuum the answers are still the same bytes.
    assert_eq!(queries(&remote, &dir.path().join("q-s3-2"), &env), expected);
    assert_eq!(
        queries(&local, &dir.path().join("q-local-2"), &env),
        expected
    );
}

#[test]
fn four_sharded_writers_ingest_twenty_four_scenes_once_each() {
    let Some(env) = s3_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scenes: Vec<String> = write_scenes(&dir.path().join("scenes"), 24)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let wh = url("shards");
    // Four processes at once, as four pods of an Indexed Job, each committing per 2 scenes.
    let children: Vec<Child> = (0..4)
        .map(|k| {
            let shard = format!("--shard={k}/4");
            let args = ingest_args(&wh, &scenes, &[&shard, "--commit-every=2", "--json"]);
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_pixelquery"));
            cmd.args(&args)
                .envs(env.iter().map(|(k, v)| (k, v.as_str())))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["scenes_found"], 6, "{report}");
        assert_eq!(report["scenes_ingested"], 6, "{report}");
        assert!(report["warehouse_transfer"]["requests"].as_u64().unwrap() > 0);
    }
    let info = ok(&["info", &wh], &env);
    assert!(info.contains("scenes      24"), "{info}");
    let v = ok(&["verify", &wh], &env);
    assert!(v.contains(" 0 problems"), "{v}");
    // Every date once at a pixel all scenes cover.
    let (x, y) = (ORIGIN.0 + 455.0, ORIGIN.1 - 305.0);
    let table = ok(
        &[
            "query",
            &wh,
            "--point",
            &format!("{x},{y}"),
            "--crs",
            "32652",
        ],
        &env,
    );
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 24, "{table}");
    let mut dates: Vec<&str> = rows
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    dates.dedup();
    assert_eq!(dates.len(), 24, "{table}");
}

/// A small deterministic generator (seeded from the clock; printed to replay).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn a_writer_killed_at_random_points_leaves_a_warehouse_that_verifies_and_completes() {
    let Some(env) = s3_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scenes: Vec<String> = write_scenes(&dir.path().join("scenes"), 12)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let seed = std::env::var("PQ_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("S3 kill test seed {seed} (set PQ_KILL_SEED to replay)");
    let mut rng = Lcg(seed);
    let spawn = |wh: &str| {
        let args = ingest_args(wh, &scenes, &["--commit-every=1"]);
        Command::new(env!("CARGO_BIN_EXE_pixelquery"))
            .args(&args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // One uninterrupted run, to spread the kills over its length.
    let timing = url("kill-timing");
    let start = Instant::now();
    assert!(spawn(&timing).wait().unwrap().success());
    let full = start.elapsed().max(Duration::from_millis(200));

    let (mut kills, mut runs) = (0, 0);
    for cycle in 0..4 {
        let wh = url(&format!("kill{cycle}"));
        for _ in 0..2 {
            let mut child = spawn(&wh);
            runs += 1;
            let delay = Duration::from_micros(rng.next() % full.as_micros() as u64);
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            child.wait().unwrap();
            // Whatever was committed is whole; a killed run's uploads are only unreferenced.
            let (code, out, err) = cli(&["verify", &wh], &env);
            if code != 0 && err.contains("not a PixelQuery warehouse") {
                continue; // killed before the warehouse existed
            }
            assert_eq!(code, 0, "after a kill at {delay:?}: {out}{err}");
        }
        // A re-run completes the work: every scene once.
        ok(&ingest_args(&wh, &scenes, &[]), &env);
        let info = ok(&["info", &wh], &env);
        assert!(info.contains("scenes      12"), "{info}");
        ok(&["vacuum", &wh, "--older-than", "0"], &env);
        let v = ok(&["verify", &wh], &env);
        assert!(v.contains("0 unreferenced files, 0 problems"), "{v}");
    }
    eprintln!("{kills} kills in {runs} runs (a full run takes {full:?})");
}

//! Faults between PixelQuery and a real S3 server (SeaweedFS, from `.ci/s3-server`), injected
//! by a proxy on 127.0.0.1 (`tests/support/fault_proxy.rs`): answers lost after the server
//! stored a PUT (dropped connection, 500), resets, truncated answers, delays and 503 Slow Down
//! bursts, on every kind of write (log entries of appends, merges and compactions, catalog
//! parts, fragments) and in random mixes with fixed seeds, with several writers at once.
//!
//! Every case ends the same way: after at most a re-run without faults the warehouse holds
//! every scene once, `verify` is clean, and queries give the bytes a local warehouse gives.
//! Faults the protocol can absorb (a lost answer to a PUT that landed) must not even fail
//! the first run.

mod common;
mod s3_support;
mod support;

use s3_support::{cli, ingest_args, ok, queries, s3_env, url, write_scenes};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::fault_proxy::{Fault, FaultProxy, Match, Rule};

/// Scenes per case: with one commit per scene, 8 appends fill a tier of catalog parts, so
/// automatic merges commit too.
const SCENES: usize = 8;

struct Case {
    dir: tempfile::TempDir,
    scenes: Vec<String>,
    env: Vec<(&'static str, String)>,
    expected: Vec<Vec<u8>>,
}

/// Scenes, the S3 environment, and the query outputs of a local warehouse built from them.
fn case() -> Option<Case> {
    let env = s3_env()?;
    let dir = tempfile::tempdir().unwrap();
    let scenes: Vec<String> = write_scenes(&dir.path().join("scenes"), SCENES)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let local = dir.path().join("local").display().to_string();
    ok(&ingest_args(&local, &scenes, &[]), &env);
    let expected = queries(&local, &dir.path().join("q-local"), &env);
    Some(Case {
        dir,
        scenes,
        env,
        expected,
    })
}

impl Case {
    /// The environment with the proxy as the S3 endpoint, and short retry waits.
    fn through(&self, proxy: &FaultProxy) -> Vec<(&'static str, String)> {
        let mut env: Vec<(&'static str, String)> = self
            .env
            .iter()
            .filter(|(k, _)| *k != "AWS_ENDPOINT_URL")
            .cloned()
            .collect();
        env.push(("AWS_ENDPOINT_URL", proxy.endpoint()));
        env
    }

    /// After whatever happened under faults: a clean re-run, then every scene once, `verify`
    /// clean, the local warehouse's query bytes.
    fn check_complete(&self, wh: &str, what: &str) {
        ok(&ingest_args(wh, &self.scenes, &[]), &self.env);
        let info = ok(&["info", wh], &self.env);
        assert!(
            info.contains(&format!("scenes      {SCENES}")),
            "{what}: {info}"
        );
        let v = ok(&["verify", wh], &self.env);
        assert!(v.contains(" 0 problems"), "{what}: {v}");
        let out = self.dir.path().join(format!("q-{}", unique()));
        assert_eq!(queries(wh, &out, &self.env), self.expected, "{what}");
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn put(path_contains: &'static str) -> Match {
    Match {
        method: Some("PUT"),
        path_contains: Some(path_contains),
        ..Default::default()
    }
}

/// The PUT of a log entry whose commit is of this PixelQuery operation.
fn log_entry(operation: &'static str) -> Match {
    Match {
        method: Some("PUT"),
        path_contains: Some("_delta_log/"),
        path_ends_with: Some(".json"),
        body_contains: Some(operation),
    }
}

const APPEND: &str = r#""pixelquery.operation":"append""#;
const MERGE: &str = r#""pixelquery.operation":"merge""#;
const COMPACT: &str = r#""pixelquery.operation":"compact""#;

/// Ingests the case's scenes one commit per scene through a proxy with `rules`; returns the
/// warehouse URL and the run's (exit code, stdout, stderr).
fn ingest_through(
    c: &Case,
    name: &str,
    rules: Vec<Rule>,
    seed: u64,
) -> (String, (i32, String, String), FaultProxy) {
    let proxy = FaultProxy::start(&s3_endpoint(c), rules, seed);
    let wh = url(name);
    let run = cli(
        &ingest_args(&wh, &c.scenes, &["--commit-every=1"]),
        &c.through(&proxy),
    );
    (wh, run, proxy)
}

fn s3_endpoint(c: &Case) -> String {
    c.env
        .iter()
        .find(|(k, _)| *k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v.clone())
        .unwrap()
}

/// A lost answer to a PUT the server carried out, on every kind of write during ingest: the
/// run itself must succeed (the writer reads its commit back, or its upload was idempotent),
/// and the warehouse must be whole.
#[test]
fn lost_answers_to_stored_puts_are_absorbed_during_ingest() {
    let Some(c) = case() else { return };
    let targets: [(&str, Match); 4] = [
        ("log entry of an append", log_entry(APPEND)),
        ("log entry of a merge", log_entry(MERGE)),
        ("catalog part", put("/catalog/kind")),
        ("fragment", put("/fragments/")),
    ];
    for (what, when) in targets {
        for fault in [Fault::DropAnswer, Fault::ErrorAfter] {
            // The first, the third and the sixth of these requests lose their answers.
            let rules: Vec<Rule> = [0, 2, 5]
                .into_iter()
                .map(|skip| Rule {
                    skip,
                    ..Rule::once(when.clone(), fault)
                })
                .collect();
            let label = format!("{fault:?} on the {what}");
            let (wh, (code, out, err), proxy) = ingest_through(&c, "lost", rules, 1);
            assert!(
                !proxy.injected().is_empty(),
                "{label}: no fault was injected"
            );
            assert_eq!(code, 0, "{label}: {out}{err}\n{:?}", proxy.injected());
            // Nothing was lost: verify is clean before any re-run.
            let v = ok(&["verify", &wh], &c.env);
            assert!(v.contains(" 0 problems"), "{label}: {v}");
            c.check_complete(&wh, &label);
        }
    }
}

/// Resets, truncated answers, delays and throttling on the same writes: retried away.
#[test]
fn resets_truncation_delays_and_slowdown_bursts_are_retried() {
    let Some(c) = case() else { return };
    let get_catalog = Match {
        method: Some("GET"),
        path_contains: Some("catalog/"),
        ..Default::default()
    };
    let cases: Vec<(&str, Vec<Rule>)> = vec![
        (
            "reset before a log entry",
            vec![Rule::once(log_entry(APPEND), Fault::ResetBefore)],
        ),
        (
            "reset before a fragment",
            vec![Rule::once(put("/fragments/"), Fault::ResetBefore)],
        ),
        (
            "truncated catalog reads",
            vec![Rule {
                count: 3,
                ..Rule::once(get_catalog, Fault::Truncate)
            }],
        ),
        (
            "delayed log entry",
            vec![Rule::once(log_entry(APPEND), Fault::Delay(1500))],
        ),
        // Five Slow Down answers in a row on one key outlast the transient retries; the
        // throttling budget carries them.
        (
            "503 burst on a log entry",
            vec![Rule {
                count: 5,
                ..Rule::once(log_entry(APPEND), Fault::SlowDown)
            }],
        ),
        (
            "503 with Retry-After on a part",
            vec![Rule {
                count: 2,
                ..Rule::once(put("/catalog/kind"), Fault::SlowDownRetryAfter)
            }],
        ),
    ];
    for (what, rules) in cases {
        let (wh, (code, out, err), proxy) = ingest_through(&c, "retry", rules, 2);
        assert!(
            !proxy.injected().is_empty(),
            "{what}: no fault was injected"
        );
        assert_eq!(code, 0, "{what}: {out}{err}\n{:?}", proxy.injected());
        c.check_complete(&wh, what);
    }
}

/// A compaction whose commit's answer is lost: the compaction stands (it landed) and
/// nothing it names is deleted.
#[test]
fn a_compaction_commit_with_a_lost_answer_keeps_its_files() {
    let Some(c) = case() else { return };
    for fault in [Fault::DropAnswer, Fault::ErrorAfter] {
        let wh = url("compact");
        ok(&ingest_args(&wh, &c.scenes, &["--commit-every=2"]), &c.env);
        let proxy = FaultProxy::start(
            &s3_endpoint(&c),
            vec![Rule::once(log_entry(COMPACT), fault)],
            3,
        );
        let (code, out, err) = cli(&["compact", &wh, "--period", "all"], &c.through(&proxy));
        assert_eq!(
            proxy.injected().len(),
            1,
            "{fault:?}: {:?}",
            proxy.injected()
        );
        assert_eq!(code, 0, "{fault:?}: {out}{err}");
        let v = ok(&["verify", &wh], &c.env);
        assert!(v.contains(" 0 problems"), "{fault:?}: {v}");
        let history = ok(&["info", &wh, "--json"], &c.env);
        assert!(history.contains("scenes"), "{history}");
        c.check_complete(&wh, &format!("{fault:?} on the compaction commit"));
    }
}

/// Random mixes of every fault on every request, with fixed seeds: a run may fail, but a
/// re-run completes, nothing committed is lost, and the answers are right.
#[test]
fn random_fault_mixes_with_fixed_seeds_end_complete() {
    let Some(c) = case() else { return };
    let any = Match::default();
    let mix = |p: f64| {
        vec![
            Rule::random(any.clone(), Fault::DropAnswer, p),
            Rule::random(any.clone(), Fault::ErrorAfter, p),
            Rule::random(any.clone(), Fault::ResetBefore, p),
            Rule::random(any.clone(), Fault::Truncate, p),
            Rule::random(any.clone(), Fault::SlowDown, p),
            Rule::random(any.clone(), Fault::Delay(300), p),
        ]
    };
    for seed in [11, 12, 13] {
        let (wh, (code, _, err), proxy) = ingest_through(&c, "mix", mix(0.03), seed);
        eprintln!(
            "seed {seed}: exit {code}, {} faults in {} requests{}",
            proxy.injected().len(),
            proxy.requests(),
            err.lines()
                .last()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        );
        assert!(
            !proxy.injected().is_empty(),
            "seed {seed}: no fault was injected"
        );
        // Whatever the first run did, what it committed is whole.
        let (vcode, v, verr) = cli(&["verify", &wh], &c.env);
        if !verr.contains("not a PixelQuery warehouse") {
            assert_eq!(vcode, 0, "seed {seed}: {v}{verr}");
        }
        c.check_complete(&wh, &format!("seed {seed}"));
    }
}

/// Three writers with overlapping scene lists at once, each through its own faulty proxy:
/// every scene ends committed exactly once, and writers that find scenes committed by the
/// others drop them from their batches instead of failing.
#[test]
fn concurrent_writers_under_faults_commit_every_scene_once() {
    let Some(c) = case() else { return };
    for seed in [21, 22] {
        let wh = url("writers");
        let proxies: Vec<FaultProxy> = (0..3)
            .map(|k| {
                let rules = vec![
                    Rule::random(log_entry(""), Fault::DropAnswer, 0.15),
                    Rule::random(Match::default(), Fault::ErrorAfter, 0.02),
                    Rule::random(Match::default(), Fault::SlowDown, 0.02),
                ];
                FaultProxy::start(&s3_endpoint(&c), rules, seed * 10 + k)
            })
            .collect();
        // Overlapping halves: writer k takes scenes k*2 .. k*2+5.
        let children: Vec<_> = proxies
            .iter()
            .enumerate()
            .map(|(k, proxy)| {
                let mine: Vec<String> = c.scenes[k * 2..(k * 2 + 5).min(SCENES)].to_vec();
                let args = ingest_args(&wh, &mine, &["--commit-every=2", "--json"]);
                Command::new(env!("CARGO_BIN_EXE_pixelquery"))
                    .args(&args)
                    .envs(c.through(proxy).iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (k, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!(
                "seed {seed} writer {k}: exit {:?}, {} faults",
                out.status.code(),
                proxies[k].injected().len()
            );
            // A writer that loses to another on a scene must not fail for it.
            assert!(
                !stderr.contains("already committed"),
                "seed {seed} writer {k}: {stderr}"
            );
        }
        c.check_complete(&wh, &format!("writers, seed {seed}"));
    }
}

/// Local folders too: two ingests with overlapping scene lists at once both succeed, and
/// the one that finds scenes committed by the other reports them as skipped.
#[test]
fn overlapping_local_ingests_both_succeed_and_skip_the_other_writers_scenes() {
    let Some(c) = case() else { return };
    for round in 0..3 {
        let wh = c.dir.path().join(format!("overlap{round}"));
        let wh_s = wh.display().to_string();
        let spawn = |scenes: &[String]| {
            Command::new(env!("CARGO_BIN_EXE_pixelquery"))
                .args(ingest_args(&wh_s, scenes, &["--json"]))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let a = spawn(&c.scenes[..6]);
        let b = spawn(&c.scenes[2..]);
        let mut ingested = 0;
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "round {round}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            ingested += report["scenes_ingested"].as_u64().unwrap();
            for s in report["skipped"].as_array().unwrap() {
                assert!(
                    s["reason"].as_str().unwrap().contains("already ingested"),
                    "{s}"
                );
            }
        }
        assert_eq!(
            ingested, SCENES as u64,
            "round {round}: every scene ingested once"
        );
        let v = ok(&["verify", &wh_s], &c.env);
        assert!(v.contains(" 0 problems"), "{v}");
        c.check_complete(&wh_s, &format!("overlapping local ingests, round {round}"));
    }
}

/// `verify` calls files missing from a published version data loss, `ingest` refuses to
/// build on it, and `restore` goes back to the newest complete version, after which a
/// re-run completes the warehouse.
#[test]
fn lost_files_are_data_loss_that_ingest_refuses_and_restore_repairs() {
    let Some(c) = case() else { return };
    let wh: PathBuf = c.dir.path().join("lossy");
    let wh_s = wh.display().to_string();
    ok(
        &ingest_args(&wh_s, &c.scenes[..5], &["--commit-every=1"]),
        &c.env,
    );
    // Lose the newest commit's catalog parts, as the old bug did.
    let newest = newest_parts(&wh);
    assert!(!newest.is_empty());
    for p in &newest {
        std::fs::remove_file(p).unwrap();
    }
    let (code, out, _) = cli(&["verify", &wh_s], &c.env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("data loss"), "{out}");
    assert!(out.contains("pixelquery restore"), "{out}");
    let (code, _, err) = cli(&ingest_args(&wh_s, &c.scenes, &[]), &c.env);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("data loss") && err.contains("pixelquery restore"),
        "{err}"
    );
    let out = ok(&["restore", &wh_s], &c.env);
    assert!(out.contains("restored version"), "{out}");
    c.check_complete(&wh_s, "after restore");
}

/// The catalog parts added by the newest commit of a local warehouse.
fn newest_parts(wh: &Path) -> Vec<PathBuf> {
    let log = wh.join("catalog/_delta_log");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    let text = std::fs::read_to_string(entries.last().unwrap()).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|a| {
            a["add"]["path"]
                .as_str()
                .map(|p| wh.join("catalog").join(p))
        })
        .collect()
}

//! Automatic compaction beside the writer instead of after each of its commits: a long
//! ingest hands the tile-bands each commit touched to one worker thread, which merges what
//! is due on the latest version while the next scenes are decoded. Commits that arrive while
//! a merge runs are gathered into the next one, so the worker never falls behind by more
//! than one round. Its commits are those of any concurrent writer (rebased, conflict-safe).

use super::auto::{self, AutoCompaction, Group};
use crate::store::{merge, Snapshot, Warehouse};
use std::collections::BTreeSet;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the worker did over its life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionTotals {
    /// Rounds of merging that committed a version.
    pub versions: usize,
    /// Merges made (a cascade counts each step).
    pub merges: usize,
    /// Bytes of fragments written.
    pub bytes_written: u64,
    /// Milliseconds spent writing merged fragments.
    pub merge_ms: u64,
    /// Milliseconds spent committing the swaps.
    pub commit_ms: u64,
    /// Why rounds failed (the commits they followed stand).
    pub errors: Vec<String>,
}

impl CompactionTotals {
    /// Adds what one round (or one inline compaction) did.
    pub fn add(&mut self, round: &AutoCompaction) {
        self.versions += usize::from(round.version.is_some());
        self.merges += round.merges;
        self.bytes_written += round.bytes_written;
        self.merge_ms += round.merge_ms;
        self.commit_ms += round.commit_ms;
    }
}

/// The sending side a warehouse handle carries: commits put their tile-bands here. Empty
/// once the worker was told to finish (commits then compact inline again).
#[derive(Clone, Default)]
pub(crate) struct Queue(Arc<Mutex<Option<Sender<BTreeSet<Group>>>>>);

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queue")
    }
}

impl Queue {
    /// Hands `groups` to the worker; gives them back when it has finished.
    pub(crate) fn send(&self, groups: BTreeSet<Group>) -> Option<BTreeSet<Group>> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(groups).err().map(|e| e.0),
            None => Some(groups),
        }
    }
}

/// A running compaction worker. [`Background::finish`] waits for what was handed to it.
pub struct Background {
    queue: Queue,
    worker: Option<JoinHandle<CompactionTotals>>,
}

impl Background {
    /// Starts a worker for `wh`; returns a handle of `wh` whose commits hand their
    /// tile-bands to it, and the worker.
    pub(crate) fn start(wh: &Warehouse) -> (Warehouse, Background) {
        let (tx, rx) = mpsc::channel();
        let own = wh.clone();
        let worker = std::thread::Builder::new()
            .name("pixelquery-compaction".into())
            .spawn(move || work(&own, &rx))
            .ok();
        let queue = Queue(Arc::new(Mutex::new(worker.as_ref().map(|_| tx))));
        (
            wh.with_compaction_queue(queue.clone()),
            Background { queue, worker },
        )
    }

    /// Stops taking new work, waits for the worker to merge what it was given, and returns
    /// what it did.
    pub fn finish(mut self) -> CompactionTotals {
        self.stop()
    }

    fn stop(&mut self) -> CompactionTotals {
        self.queue
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(totals)) => totals,
            Some(Err(_)) => CompactionTotals {
                errors: vec!["the compaction worker stopped unexpectedly".into()],
                ..Default::default()
            },
            None => CompactionTotals::default(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

fn work(wh: &Warehouse, rx: &Receiver<BTreeSet<Group>>) -> CompactionTotals {
    let mut totals = CompactionTotals::default();
    while let Ok(mut groups) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            groups.extend(more);
        }
        match round(wh, &groups) {
            Ok(done) => totals.add(&done),
            Err(e) => totals.errors.push(e.to_string()),
        }
    }
    totals
}

/// Merges what is due in `groups` at the latest version, then keeps the catalog parts few.
fn round(wh: &Warehouse, groups: &BTreeSet<Group>) -> crate::store::Result<AutoCompaction> {
    let state = wh.log().state(None, false)?;
    let snapshot = Snapshot::load(wh, &state, Default::default())?;
    let done = auto::after_commit(wh, &snapshot, groups)?;
    if done.version.is_some() {
        let latest = wh.log().state(None, false)?;
        let _ = merge::merge_if_needed(wh, &latest);
    }
    Ok(done)
}

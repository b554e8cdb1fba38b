//! Background fsync: a batch hands each finished fragment file to a few I/O threads, so the
//! disk writes it while the batch goes on encoding the next ones, and the commit only waits
//! for what is still in flight.

use super::layout::io_err;
use super::Result;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Threads that fsync concurrently (they wait on the disk, not the CPU; several in flight
/// let the filesystem group them into fewer journal commits).
const THREADS: usize = 4;
/// Files waiting for a thread at most: writers block beyond it, which bounds the open file
/// descriptors (and lets the disk set the pace).
const QUEUE: usize = 64;

type Job = (File, PathBuf);

/// Fsyncs files handed to it; [`Syncer::finish`] waits for all and reports the first error.
pub(crate) struct Syncer {
    inner: Mutex<Option<Running>>,
}

struct Running {
    sender: SyncSender<Job>,
    workers: Vec<JoinHandle<Result<()>>>,
}

impl Syncer {
    pub(crate) fn new() -> Self {
        Syncer {
            inner: Mutex::new(None),
        }
    }

    /// Queues `file` (already written in full) for fsync, waiting while the queue is full;
    /// threads start on first use.
    pub(crate) fn sync(&self, file: File, path: PathBuf) {
        // Clone the sender so a full queue blocks only this writer, not the lock.
        let sender = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.get_or_insert_with(start).sender.clone()
        };
        if let Err(returned) = sender.send((file, path)) {
            // Every worker has stopped (after an error): sync here so nothing is skipped.
            let (file, _) = returned.0;
            let _ = file.sync_all();
        }
    }

    /// Waits until every queued file is durable; the first failure names its file.
    pub(crate) fn finish(&self) -> Result<()> {
        let running = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(Running { sender, workers }) = running else {
            return Ok(());
        };
        drop(sender);
        let mut first = Ok(());
        for w in workers {
            let r = w.join().unwrap_or(Ok(()));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn start() -> Running {
    let (sender, receiver) = sync_channel::<Job>(QUEUE);
    let receiver = Arc::new(Mutex::new(receiver));
    let workers = (0..THREADS)
        .map(|_| {
            let receiver = Arc::clone(&receiver);
            std::thread::spawn(move || worker(&receiver))
        })
        .collect();
    Running { sender, workers }
}

fn worker(receiver: &Mutex<Receiver<Job>>) -> Result<()> {
    let mut result = Ok(());
    loop {
        let job = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((file, path)) = job else {
            return result;
        };
        // Keep draining after a failure so `finish` never waits on a full queue.
        if result.is_ok() {
            result = file.sync_all().map_err(io_err(&path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_everything_queued_and_finishes_twice() {
        let d = tempfile::tempdir().unwrap();
        let s = Syncer::new();
        assert!(s.finish().is_ok());
        // More files than the queue holds: writers wait, nothing is lost.
        for i in 0..(QUEUE * 3) {
            let p = d.path().join(format!("f{i}"));
            std::fs::write(&p, b"x").unwrap();
            s.sync(File::open(&p).unwrap(), p);
        }
        assert!(s.finish().is_ok());
        assert!(s.finish().is_ok());
    }
}

//! `--shard K/N`: the K-th of N deterministic shards of a run's scenes, so N workers of a
//! batch system (a Kubernetes Indexed Job, an AWS Batch array) given the same inputs ingest
//! disjoint parts of them into one warehouse, each committing its own batches.

use super::discover::SceneSource;

/// One shard of N. `index` counts from 0, like `JOB_COMPLETION_INDEX` and
/// `AWS_BATCH_JOB_ARRAY_INDEX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, `0..count`.
    pub index: u32,
    /// How many shards.
    pub count: u32,
}

/// A `--shard` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --shard {text:?}: {reason}")]
pub struct ShardError {
    /// The value as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    /// Parses `K/N` with `0 <= K < N`.
    fn from_str(text: &str) -> Result<Shard, ShardError> {
        let err = |reason| ShardError {
            text: text.to_string(),
            reason,
        };
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| err("expected K/N, e.g. 0/4 (K counts from 0)"))?;
        let index: u32 = k.trim().parse().map_err(|_| err("K is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| err("N is not a number"))?;
        if count == 0 {
            return Err(err("N must be at least 1"));
        }
        if index >= count {
            return Err(err("K must be below N (K counts from 0)"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The scenes of this shard. Scenes are ordered by id (then by their first asset) before
    /// being dealt round-robin, so every worker agrees whatever order its inputs were found
    /// in, and the shards differ in size by at most one scene.
    pub fn select(&self, scenes: &[SceneSource]) -> Vec<SceneSource> {
        let mut order: Vec<&SceneSource> = scenes.iter().collect();
        order.sort_by(|a, b| {
            let first = |s: &SceneSource| s.assets.first().map(|a| a.location.clone());
            a.id.cmp(&b.id).then_with(|| first(a).cmp(&first(b)))
        });
        order
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 % self.count as u64 == self.index as u64)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

impl Shard {
    /// The scenes of this shard, each dealt by a hash of its id alone (STAC API items): N
    /// workers agree on every item they both see even when their searches returned
    /// different item sets (items published between the searches).
    pub fn select_by_id(&self, scenes: &[SceneSource]) -> Vec<SceneSource> {
        use sha2::{Digest, Sha256};
        scenes
            .iter()
            .filter(|s| {
                let d = Sha256::digest(s.id.as_bytes());
                let h = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
                h % self.count as u64 == self.index as u64
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(id: &str) -> SceneSource {
        SceneSource {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2", ""] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains("--shard") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn shards_partition_the_scenes_whatever_their_order() {
        let ids: Vec<String> = (0..23).map(|i| format!("S{i:02}")).collect();
        let forward: Vec<SceneSource> = ids.iter().map(|i| scene(i)).collect();
        let backward: Vec<SceneSource> = forward.iter().rev().cloned().collect();
        let mut all = Vec::new();
        for k in 0..4 {
            let shard = Shard { index: k, count: 4 };
            let a: Vec<String> = shard.select(&forward).into_iter().map(|s| s.id).collect();
            let b: Vec<String> = shard.select(&backward).into_iter().map(|s| s.id).collect();
            assert_eq!(a, b);
            assert!(a.len() == 5 || a.len() == 6, "{}", a.len());
            all.extend(a);
        }
        all.sort();
        assert_eq!(all, ids);
    }

    #[test]
    fn shards_by_id_partition_whatever_else_was_found() {
        let ids: Vec<String> = (0..200).map(|i| format!("S2B_T{i:03}")).collect();
        let all: Vec<SceneSource> = ids.iter().map(|i| scene(i)).collect();
        let fewer: Vec<SceneSource> = all.iter().step_by(3).cloned().collect();
        let mut seen = Vec::new();
        for k in 0..4 {
            let shard = Shard { index: k, count: 4 };
            let a: Vec<String> = shard.select_by_id(&all).into_iter().map(|s| s.id).collect();
            assert!(a.len() > 30 && a.len() < 70, "{}", a.len());
            // A worker that saw fewer items agrees on those it saw.
            for s in shard.select_by_id(&fewer) {
                assert!(a.contains(&s.id));
            }
            seen.extend(a);
        }
        seen.sort();
        assert_eq!(seen, ids);
    }
}

//! The `mode` kernel's accumulator: the most frequent valid value of the source pixels a
//! destination pixel covers (for class and QA bands, where averaging would invent classes).

use crate::dtype::Sample;

/// Counts values without allocating per pixel: clear it, add samples, read the mode.
///
/// Ties go to the value that reached the winning count first in scan order (row by row),
/// which is what GDAL's byte histogram does.
#[derive(Debug, Default)]
pub(crate) struct ModeCounter<T> {
    values: Vec<T>,
    counts: Vec<u32>,
    best: Option<usize>,
}

impl<T: Sample> ModeCounter<T> {
    /// An empty counter.
    pub(crate) fn new() -> Self {
        ModeCounter {
            values: Vec::new(),
            counts: Vec::new(),
            best: None,
        }
    }

    /// Forgets all samples (keeps the allocation).
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.values.clear();
        self.counts.clear();
        self.best = None;
    }

    /// Counts one valid sample.
    #[inline]
    pub(crate) fn add(&mut self, v: T) {
        let i = match self.values.iter().position(|&x| x == v) {
            Some(i) => {
                self.counts[i] += 1;
                i
            }
            None => {
                self.values.push(v);
                self.counts.push(1);
                self.values.len() - 1
            }
        };
        match self.best {
            Some(b) if self.counts[b] >= self.counts[i] => {}
            _ => self.best = Some(i),
        }
    }

    /// The most frequent value, `None` when no sample was added.
    #[inline]
    pub(crate) fn mode(&self) -> Option<T> {
        self.best.map(|b| self.values[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_frequent_wins_ties_go_to_first_to_reach() {
        let mut m = ModeCounter::<u8>::new();
        assert_eq!(m.mode(), None);
        for v in [3, 5, 5, 3, 7] {
            m.add(v);
        }
        // 5 reached count 2 before 3 did.
        assert_eq!(m.mode(), Some(5));
        m.clear();
        for v in [1, 2, 2, 1, 1] {
            m.add(v);
        }
        assert_eq!(m.mode(), Some(1));
    }
}

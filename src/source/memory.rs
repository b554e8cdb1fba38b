//! Bytes already in memory.

use super::{ByteSource, Result};
use bytes::Bytes;

/// Bytes already in memory (tests, fuzzing, data fetched by other means).
#[derive(Debug, Clone)]
pub struct InMemory {
    data: Bytes,
    name: String,
}

impl InMemory {
    /// Wraps a buffer under a display name.
    pub fn new(name: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Self {
            data: data.into(),
            name: name.into(),
        }
    }
}

impl ByteSource for InMemory {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let end = offset.saturating_add(len as u64);
        if end > self.size() {
            return Err(self.past_end(offset, end));
        }
        Ok(self.data.slice(offset as usize..end as usize))
    }

    fn merge_gap(&self) -> u64 {
        u64::MAX
    }
}

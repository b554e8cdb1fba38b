//! Cube buffers used again instead of fresh memory.
//!
//! A cube is one contiguous buffer. Below 32 MiB the allocator keeps freed memory for the
//! next request, but larger buffers are new mappings each time, and the kernel zeroes (and a
//! virtual machine may first back) every page of them on first write: on the 2-core VMs
//! this crate is measured on, that costs several times what painting the cube costs. So
//! query buffers of 8 MiB and more go back to a small process-wide pool when the cube (or an
//! internal window) that held them is dropped, and the next query of a similar size paints
//! into those warm pages instead. Contents are never read: painters write every element.
//!
//! The pool holds at most [`MAX_BUFFERS`] buffers and an eighth of the default memory
//! budget (a 32nd of the machine's memory); [`release_buffers`] frees them at once.

use super::budget::default_memory_budget;
use std::any::{Any, TypeId};
use std::sync::{Mutex, MutexGuard};

/// Buffers smaller than this are left to the allocator, which reuses them well.
pub const MIN_BYTES: usize = 8 << 20;
/// Most buffers kept at once.
pub const MAX_BUFFERS: usize = 4;

/// One idle buffer: a `Vec<T>` of length 0.
struct Idle {
    elem: TypeId,
    bytes: usize,
    buf: Box<dyn Any + Send>,
}

/// The idle buffers, least recently returned first.
static POOL: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

fn pool() -> MutexGuard<'static, Vec<Idle>> {
    // The pool only holds whole buffers, so it is valid even if a holder panicked.
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Most bytes kept idle.
fn limit() -> usize {
    usize::try_from(default_memory_budget() / 8).unwrap_or(usize::MAX)
}

/// An empty vector with room for `len` elements: a pooled buffer of the same element type
/// when one fits (at least `len`, at most twice that), else a new allocation. `None` when
/// the memory cannot be had.
pub(crate) fn take<T: Send + 'static>(len: usize) -> Option<Vec<T>> {
    let bytes = len.saturating_mul(std::mem::size_of::<T>());
    if bytes >= MIN_BYTES {
        let mut idle = pool();
        let best = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.elem == TypeId::of::<T>() && b.bytes >= bytes && b.bytes / 2 <= bytes
            })
            .min_by_key(|(_, b)| b.bytes)
            .map(|(i, _)| i);
        if let Some(i) = best {
            if let Ok(buf) = idle.remove(i).buf.downcast::<Vec<T>>() {
                return Some(*buf);
            }
        }
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).ok()?;
    Some(buf)
}

/// Keeps `buf` for a later query when it is large enough to be worth it; its contents are
/// dropped. The least recently returned buffers make room. Cubes give their buffers back
/// when dropped; call this with the buffer of a cube taken apart (`Cube::data`'s vector).
pub fn give<T: Send + 'static>(mut buf: Vec<T>) {
    let bytes = buf.capacity().saturating_mul(std::mem::size_of::<T>());
    let limit = limit();
    if bytes < MIN_BYTES || bytes > limit {
        return;
    }
    buf.clear();
    let mut idle = pool();
    let mut held: usize = idle.iter().map(|b| b.bytes).sum();
    while !idle.is_empty() && (idle.len() >= MAX_BUFFERS || held + bytes > limit) {
        held -= idle.remove(0).bytes;
    }
    idle.push(Idle {
        elem: TypeId::of::<T>(),
        bytes,
        buf: Box::new(buf),
    });
}

/// Gives the buffer of an array back (see [`give`]).
pub fn give_array<T: Send + 'static, D: ndarray::Dimension>(array: ndarray::Array<T, D>) {
    give(array.into_raw_vec_and_offset().0);
}

/// Frees every idle buffer now (queries after this allocate fresh ones again).
pub fn release_buffers() {
    let idle = std::mem::take(&mut *pool());
    drop(idle);
}

/// Bytes held by idle buffers.
pub fn idle_bytes() -> usize {
    pool().iter().map(|b| b.bytes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes idle of element type `T` (other tests may pool cubes of their own types: these
    /// use element types no cube has).
    fn idle_of<T: 'static>() -> usize {
        pool()
            .iter()
            .filter(|b| b.elem == TypeId::of::<T>())
            .map(|b| b.bytes)
            .sum()
    }

    /// Tests that release the pool take turns with those that look into it.
    static TURN: Mutex<()> = Mutex::new(());

    #[test]
    fn buffers_come_back_for_similar_sizes_and_types() {
        let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        let len = MIN_BYTES / 8 * 3; // 24 MiB of u64
        let mut a: Vec<u64> = take(len).unwrap();
        a.resize(len, 1);
        let address = a.as_ptr();
        give(a);
        assert_eq!(idle_of::<u64>(), len * 8);
        // Another element type, or a size it would more than halve, gets a new buffer.
        let other: Vec<i64> = take(len).unwrap();
        assert_ne!(other.as_ptr() as usize, address as usize);
        let small: Vec<u64> = take(len / 3).unwrap();
        assert_ne!(small.as_ptr(), address);
        // A similar size of the same type gets the warm one, empty.
        let b: Vec<u64> = take(len - 1000).unwrap();
        assert_eq!((b.as_ptr(), b.len()), (address, 0));
        assert_eq!(idle_of::<u64>(), 0);
        // Small buffers are not kept.
        give(vec![0u64; 16]);
        assert_eq!(idle_of::<u64>(), 0);
        give(b);
        assert_eq!(idle_of::<u64>(), len * 8);
        let _ = take::<u64>(len).unwrap();
    }

    #[test]
    fn the_pool_stays_within_its_limits_and_releases() {
        let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..MAX_BUFFERS + 3 {
            give(vec![0i64; MIN_BYTES / 8]);
        }
        assert!(pool().len() <= MAX_BUFFERS);
        assert!(idle_bytes() <= limit());
        release_buffers();
        assert_eq!(idle_of::<i64>(), 0);
    }
}

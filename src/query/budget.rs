//! The memory budget of queries: its default, human-readable sizes, and splitting a cube into
//! windows that fit.

use super::plan::CubeWindow;

/// The default memory budget: a quarter of the memory this process can have: the machine's
/// physical memory, or less under a cgroup memory limit or an address-space limit
/// (`ulimit -v`); at least 256 MiB, 2 GiB when nothing is known. On a 1 GB device that is
/// 256 MB. Computed once per process.
pub fn default_memory_budget() -> u64 {
    // Read once per process: the files behind it cost more than a small query.
    static BUDGET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        const MIB: u64 = 1 << 20;
        let limits = [total_memory(), cgroup_memory_limit(), address_space_limit()];
        match limits.into_iter().flatten().min() {
            Some(total) => (total / 4).max(256 * MIB),
            None => 2048 * MIB,
        }
    })
}

/// Largest window a file output is painted in, however large the budget: bigger windows
/// write no faster (a 1° box of 12 dates to `.tif`: 62 s in 256 MB windows, 71 s painted
/// whole as one 2.4 GB window) and only hold more memory.
pub const FILE_WINDOW_BYTES: u64 = 512 << 20;

/// Physical memory in bytes (`MemTotal` of `/proc/meminfo`), when known.
fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The cgroup's memory limit in bytes (v2 `memory.max`, else v1), when there is one.
fn cgroup_memory_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .find_map(|t| t.trim().parse::<u64>().ok())
}

/// The soft address-space limit (`ulimit -v`) in bytes, from `/proc/self/limits`.
fn address_space_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_address_space_limit(&text)
}

fn parse_address_space_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    let soft = line["Max address space".len()..]
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

/// `4.9 GB`, `310 MB`, `12 kB`, `7 bytes` (decimal units).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{bytes} bytes")
    }
}

/// How windows are aligned: their row and column starts are multiples of these (blocks of
/// the output file), and their sizes too but at the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alignment {
    /// Rows per block.
    pub rows: usize,
    /// Columns per block.
    pub cols: usize,
}

/// Splits a `steps` x `height` x `width` cube into windows whose `bytes` stay within
/// `budget`, in row-major order (steps outermost, then rows, then columns). Prefers whole
/// time axes and full-width bands of rows (so each fragment is read once per band of rows),
/// then fewer steps, then fewer columns; a window of one step and one block is the
/// smallest, used even when it exceeds the budget.
pub fn split_windows(
    steps: usize,
    height: usize,
    width: usize,
    budget: u64,
    align: Alignment,
    bytes: impl Fn(&CubeWindow) -> u64,
) -> Vec<CubeWindow> {
    if steps == 0 || height == 0 || width == 0 {
        return Vec::new();
    }
    let (ar, ac) = (align.rows.max(1), align.cols.max(1));
    let fits = |s: usize, r: usize, c: usize| {
        bytes(&CubeWindow {
            steps: 0..s,
            rows: 0..r.min(height),
            cols: 0..c.min(width),
        }) <= budget
    };
    // Largest count n in 1..=max (in units) with fits(n), by bisection; 0 when none.
    let largest = |max: usize, f: &dyn Fn(usize) -> bool| -> usize {
        let (mut lo, mut hi) = (0usize, max);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if f(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    };
    let row_blocks = height.div_ceil(ar);
    let col_blocks = width.div_ceil(ac);
    let (s_per, r_per, c_per) = {
        let r = largest(row_blocks, &|n| fits(steps, n * ar, width));
        if r > 0 {
            (steps, r * ar, width)
        } else {
            let s = largest(steps, &|n| fits(n, ar, width));
            if s > 0 {
                let r = largest(row_blocks, &|n| fits(s, n * ar, width)).max(1);
                (s, r * ar, width)
            } else {
                let c = largest(col_blocks, &|n| fits(1, ar, n * ac)).max(1);
                (1, ar, c * ac)
            }
        }
    };
    let mut out = Vec::new();
    for s0 in (0..steps).step_by(s_per) {
        for r0 in (0..height).step_by(r_per) {
            for c0 in (0..width).step_by(c_per) {
                out.push(CubeWindow {
                    steps: s0..(s0 + s_per).min(steps),
                    rows: r0..(r0 + r_per).min(height),
                    cols: c0..(c0 + c_per).min(width),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elems(w: &CubeWindow) -> u64 {
        (w.steps.len() * w.rows.len() * w.cols.len()) as u64
    }

    #[test]
    fn windows_cover_the_cube_once_within_the_budget() {
        let align = Alignment { rows: 16, cols: 16 };
        for (budget, expect) in [
            (1_000_000u64, 1usize), // everything
            (10 * 100 * 48, 3),     // bands of 48 rows
            (100 * 16 * 3, 4 * 7),  // 3 steps x 16 rows
            (16 * 32, 10 * 7 * 4),  // one step, 16 rows, 32 columns
            (1, 10 * 7 * 7),        // smallest window, over budget
        ] {
            let wins = split_windows(10, 100, 100, budget, align, elems);
            assert_eq!(wins.len(), expect, "budget {budget}");
            let mut seen = vec![0u8; 10 * 100 * 100];
            for w in &wins {
                assert!(elems(w) <= budget.max(16 * 16), "{w:?}");
                assert!(w.rows.start % 16 == 0 && w.cols.start % 16 == 0);
                for s in w.steps.clone() {
                    for r in w.rows.clone() {
                        for c in w.cols.clone() {
                            seen[(s * 100 + r) * 100 + c] += 1;
                        }
                    }
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "budget {budget}");
        }
        assert!(split_windows(0, 10, 10, 100, align, elems).is_empty());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(4_871_446_272), "4.9 GB");
        assert_eq!(human_bytes(310_000_000), "310 MB");
        assert_eq!(human_bytes(7), "7 bytes");
        assert!(default_memory_budget() >= 256 << 20);
    }

    #[test]
    fn address_space_limits_are_read() {
        let limited = "Limit                     Soft Limit           Hard Limit           Units\n\
                       Max processes             95412                95412                processes\n\
                       Max address space         4096000000           unlimited            bytes\n";
        assert_eq!(parse_address_space_limit(limited), Some(4_096_000_000));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(parse_address_space_limit(unlimited), None);
    }
}

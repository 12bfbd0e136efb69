//! Giving freed memory back to the system after a burst.
//!
//! The server's memory follows its work: a long run whose events wait for
//! SQLite, or a subscriber that fell behind, holds many events for a while,
//! then frees them. glibc's `malloc` (Rust's allocator here, and SQLite's)
//! keeps freed memory in its per-thread arenas for reuse, so without help
//! the resident size stays at the burst's peak. [`give_back_free_memory`]
//! (`malloc_trim`) returns the free pages of every arena; the store writer
//! calls it once it has been idle after a burst, and a session's ring when
//! it shrinks back after holding many events. Measured with
//! `bash benches/memory_after_burst.sh`: after a run that held 1.67 million
//! events in memory (about 0.6 GB), RSS is back to within 10 MB of idle.

/// [`give_back_free_memory`] on the blocking pool, at most once a second:
/// a trim of a large heap can take milliseconds, which no lock holder or
/// runtime worker should wait for. Outside a runtime, at once.
pub fn give_back_free_memory_soon() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let last = LAST_MS.load(Ordering::Relaxed);
    if now_ms.saturating_sub(last) < 1_000
        || LAST_MS.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_err()
    {
        return;
    }
    give_back_free_memory_in_background();
}

/// [`give_back_free_memory`] on the blocking pool (outside a runtime, at
/// once): for a caller that does it rarely by itself (the store writer after
/// a burst).
pub fn give_back_free_memory_in_background() {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(give_back_free_memory)),
        Err(_) => give_back_free_memory(),
    }
}

/// Returns the free pages of the C heap to the system (glibc on Linux;
/// nothing elsewhere, where the allocator already does).
pub fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! Giving memory back to the system after a burst.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena for the next
//! allocation, and returns pages to the system only from the top of a heap. After a burst of
//! connections (each with its buffers, allocated on whichever runtime thread accepted it) has
//! closed, the freed memory stays resident: measured on a release build, 4,000 stalled
//! connections took the server from 9 to 41 MB, and it stayed at 38 MB after they closed.
//! Neither glibc's tunables (`M_TRIM_THRESHOLD`, `M_ARENA_MAX`) nor another allocator
//! (mimalloc) gave it back. `malloc_trim(0)` does: it walks every arena and returns each free
//! page, wherever it lies. The server calls it when a burst is over (see `serve`), never on a
//! request's path: it locks each arena while it walks it.

/// Returns the allocator's free pages to the system; whether it returned any. Elsewhere than
/// glibc it does nothing: musl's and the other systems' allocators give large frees back
/// themselves, and have no such call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "glibc's malloc_trim has no safe binding; see the SAFETY note")]
pub fn give_back() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and touches only the allocator's own free lists,
    // under the arenas' locks (glibc serializes it with every other malloc call).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() -> bool {
    false
}

//! Random bytes for IVs and keys, safe across `fork()`.
//!
//! The source is `rand`'s thread-local generator (ChaCha, seeded and
//! periodically reseeded from the operating system): a few nanoseconds per
//! IV instead of a system call. A forked child starts with a copy of that
//! generator's state, and `rand` no longer reseeds it on fork, so parent and
//! child would draw the same IVs (GCM nonce reuse) and the same new keys.
//! Each thread therefore remembers the process id it last seeded its
//! generator in and reseeds it from the operating system when the id
//! differs, that is in the first draw after a fork (and once per thread).
//!
//! Cost, measured on the 2-core machine of `docs/PERFORMANCE.md` (release
//! build, 12-byte fills): the thread generator alone 8 to 12 ns, the process
//! id check about 90 to 105 ns (`getpid` is a system call), `getrandom`
//! per IV 300 to 340 ns, aws-lc-rs's `SystemRandom` about 760 ns. The check
//! is the cheapest way to be fork-safe without `unsafe` code.

use std::cell::Cell;

use rand::{Rng, TryRng};

thread_local! {
    /// The process id this thread's generator was last seeded in (0: never).
    static SEEDED_IN: Cell<u32> = const { Cell::new(0) };
}

/// Fills `buf` with random bytes, reseeding this thread's generator first
/// when the process has forked since it was last used.
pub(crate) fn fill(buf: &mut [u8]) {
    let mut rng = rand::rng();
    let pid = std::process::id();
    if SEEDED_IN.with(Cell::get) != pid {
        if rng.reseed().is_err() {
            // The OS generator failed (it never does on a working system).
            // Draw from it directly until it works: never from a state that
            // may be a copy of another process's.
            fill_from_os(buf);
            return;
        }
        SEEDED_IN.with(|s| s.set(pid));
    }
    rng.fill_bytes(buf);
}

/// Straight from the operating system; loops until it answers.
fn fill_from_os(buf: &mut [u8]) {
    let mut os = rand::rngs::SysRng;
    while os.try_fill_bytes(buf).is_err() {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        fill(&mut a);
        fill(&mut b);
        assert_ne!(a, b);
        assert_eq!(SEEDED_IN.with(Cell::get), std::process::id());
    }

    #[test]
    fn a_stale_process_id_reseeds() {
        let mut a = [0u8; 16];
        fill(&mut a);
        SEEDED_IN.with(|s| s.set(1));
        fill(&mut a);
        assert_eq!(SEEDED_IN.with(Cell::get), std::process::id());
    }

    #[test]
    fn the_os_fallback_fills_the_buffer() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill_from_os(&mut a);
        fill_from_os(&mut b);
        assert_ne!(a, [0; 32]);
        assert_ne!(a, b);
    }
}

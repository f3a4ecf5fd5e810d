//! Random bytes for IVs and keys, safe across `fork()`.
//!
//! The source is `rand`'s thread-local generator (ChaCha, seeded and
//! periodically reseeded from the operating system): a few nanoseconds per
//! IV instead of a system call. A forked child starts with a copy of that
//! generator's state, and `rand` no longer reseeds it on fork, so parent and
//! child would draw the same IVs (GCM nonce reuse) and the same new keys.
//!
//! So every draw first checks whether the process has forked since this
//! thread's generator was last seeded, and reseeds it from the operating
//! system if so. On Unix the check is one atomic load: a `pthread_atfork`
//! child handler, registered on the first draw, counts the forks, and each
//! thread remembers the count it seeded at. Where the handler cannot be
//! registered, and on other systems, the check compares process ids
//! instead (`getpid`, a system call: 70 to 100 ns per draw).
//!
//! The handler runs in the child of every `fork()` through the C library.
//! A child made otherwise runs no handler and is not detected: one from
//! `posix_spawn` or `vfork` (which is how `std::process::Command` starts
//! programs; it calls `exec` at once and draws nothing), or from a raw
//! `clone` system call. Such a child must not draw IVs before `exec`.

use std::cell::Cell;

use rand::{Rng, TryRng};

thread_local! {
    /// The fork generation this thread's generator was last seeded at
    /// (`None`: never seeded by this module).
    static SEEDED_AT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Fills `buf` with random bytes, reseeding this thread's generator first
/// when the process has forked since it was last seeded.
pub(crate) fn fill(buf: &mut [u8]) {
    let mut rng = rand::rng();
    let generation = fork::generation();
    if SEEDED_AT.with(Cell::get) != Some(generation) {
        if rng.reseed().is_err() {
            // The OS generator failed (it never does on a working system).
            // Draw from it directly until it works: never from a state that
            // may be a copy of another process's.
            fill_from_os(buf);
            return;
        }
        SEEDED_AT.with(|s| s.set(Some(generation)));
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

#[cfg(unix)]
mod fork {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Forks seen by the child handler, in this process's lineage.
    static FORKS: AtomicU64 = AtomicU64::new(0);

    /// Whether the handler is registered (decided once, on the first draw).
    static REGISTERED: OnceLock<bool> = OnceLock::new();

    /// Runs in the child of every `fork()` through the C library. An
    /// atomic add only: async-signal-safe, as a fork handler must be.
    extern "C" fn in_child() {
        FORKS.fetch_add(1, Ordering::SeqCst);
    }

    fn register() -> bool {
        // SAFETY: `pthread_atfork` only stores the three function pointers;
        // `in_child` is a plain `extern "C" fn()` that lives for the whole
        // program and touches nothing but an atomic. Registering never
        // affects memory safety; it fails only when out of memory. (Handlers
        // cannot be removed: code linked into a shared library that is
        // unloaded with `dlclose` after its first IV would leave a dangling
        // handler. Rust code is normally never unloaded.)
        #[allow(unsafe_code, reason = "the FFI call that registers the fork handler")]
        let status = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        status == 0
    }

    /// The process's fork generation: changes in a child after each fork.
    pub(super) fn generation() -> u64 {
        if *REGISTERED.get_or_init(register) {
            // A fork before registration is caught too: a thread that never
            // seeded here reseeds on its first draw whatever the count.
            FORKS.load(Ordering::SeqCst)
        } else {
            u64::from(std::process::id())
        }
    }

    #[cfg(test)]
    pub(super) fn simulate_fork() {
        in_child();
    }
}

#[cfg(not(unix))]
mod fork {
    /// No `fork()` here: the process id stands in, changing never.
    pub(super) fn generation() -> u64 {
        u64::from(std::process::id())
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
        assert_eq!(SEEDED_AT.with(Cell::get), Some(fork::generation()));
    }

    #[cfg(unix)]
    #[test]
    fn a_new_fork_generation_reseeds() {
        let mut a = [0u8; 16];
        fill(&mut a);
        let before = fork::generation();
        fork::simulate_fork();
        assert_ne!(fork::generation(), before);
        fill(&mut a);
        assert_eq!(SEEDED_AT.with(Cell::get), Some(fork::generation()));
    }

    #[test]
    fn a_stale_generation_reseeds() {
        let mut a = [0u8; 16];
        fill(&mut a);
        SEEDED_AT.with(|s| s.set(Some(u64::MAX)));
        fill(&mut a);
        assert_eq!(SEEDED_AT.with(Cell::get), Some(fork::generation()));
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

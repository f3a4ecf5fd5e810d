//! Interleaved timing for a shared machine whose load changes while a
//! benchmark runs: each round times one batch (about 1 ms of iterations) of
//! every function, in an order that rotates from round to round, so that
//! load that comes and goes hits all sides of a ratio alike. Reports
//! medians over the rounds, so that a round interrupted by another process
//! counts no more than any other.

#![expect(
    clippy::indexing_slicing,
    reason = "indices are bounded by the case count"
)]

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

/// Target duration of one batch.
pub const BATCH: Duration = Duration::from_millis(1);

/// Runs a function `n` times and returns the elapsed time.
pub type Timed<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// A synchronous function, timed.
pub fn sync<'a, R>(mut f: impl FnMut() -> R + 'a) -> Timed<'a> {
    Box::new(move |n| {
        let start = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        start.elapsed()
    })
}

/// As criterion's `to_async`: one `block_on` per batch, the routine awaited in a loop.
pub fn on_rt<'a, R, Fut>(rt: &'a Runtime, mut f: impl FnMut() -> Fut + 'a) -> Timed<'a>
where
    Fut: Future<Output = R>,
{
    Box::new(move |n| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                black_box(f().await);
            }
            start.elapsed()
        })
    })
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    quantile(values, 0.5)
}

/// The `q` quantile of `values` (sorted in place).
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let last = values.len().saturating_sub(1);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let index = ((last as f64) * q).round() as usize;
    values.get(index).copied().unwrap_or(f64::NAN)
}

/// Times `cases` in `rounds` interleaved rounds; returns, per case, the time
/// per iteration of each round in nanoseconds (round `r` at index `r`).
pub fn measure(rounds: usize, cases: &mut [Timed<'_>]) -> Vec<Vec<f64>> {
    // Calibrate (and warm up): iterations for about one batch.
    let mut iters = vec![1u64; cases.len()];
    for (case, n) in cases.iter_mut().zip(&mut iters) {
        while case(*n) < BATCH {
            *n *= 2;
        }
        for _ in 0..20 {
            case(*n);
        }
    }
    let count = cases.len();
    let mut per_iter = vec![Vec::with_capacity(rounds); count];
    for round in 0..rounds {
        for k in 0..count {
            let i = (round + k) % count;
            #[allow(clippy::cast_precision_loss, reason = "durations far below 2^52 ns")]
            let ns = cases[i](iters[i]).as_nanos() as f64 / iters[i] as f64;
            per_iter[i].push(ns);
        }
    }
    per_iter
}

/// Times `cases` (the first is the baseline) in `rounds` interleaved rounds
/// and prints, per function, the median time per iteration and the median
/// ratio to the baseline of the same round, with its quartiles.
pub fn compare(title: &str, rounds: usize, cases: Vec<(&'static str, Timed<'_>)>) {
    let (names, mut timed): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
    let mut per_iter = measure(rounds, &mut timed);
    println!("\n{title} ({rounds} rounds)\n");
    println!("| function | median time | median ratio | ratio quartiles |");
    println!("|---|---:|---:|---:|");
    let baseline = per_iter[0].clone();
    for (name, times) in names.iter().zip(&mut per_iter) {
        let mut ratio: Vec<f64> = times.iter().zip(&baseline).map(|(t, b)| t / b).collect();
        let time = median(times);
        let (q1, q2, q3) = (
            quantile(&mut ratio, 0.25),
            quantile(&mut ratio, 0.5),
            quantile(&mut ratio, 0.75),
        );
        println!("| `{name}` | {time:.1} ns | {q2:.2} | {q1:.2} to {q3:.2} |");
    }
}

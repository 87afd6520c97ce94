//! Stalls of the machine itself, told apart from stalls of the server.
//!
//! A paced run's p99 can be spoiled by one pause of a few hundred milliseconds. To say whose
//! pause it was, each paced run also runs, on each core, a thread that does nothing but sleep
//! 1 ms at a time (as jHiccup does). On a core with idle time it wakes within a few tens of
//! microseconds; when it wakes much later, the core was taken from every thread on it (the
//! hypervisor, the kernel, or a busier thread of higher priority), not only from the server.
//! The run also reads each core's steal time (`/proc/stat`): time the hypervisor gave to
//! another machine.
//!
//! A core can also slow down without pausing: on a shared host, other machines' work competes
//! for the caches and memory, which neither steal time nor a sleeping thread show. So the
//! meter on the driver's core (never the server's, whose CPU it would take) also times, every
//! 10 ms, a fixed walk through a 4 MiB buffer in random order: the time of the fastest walk in
//! each slice of the run against its median says how fast memory was then.
//!
//! Each pause and each walk is kept with its moment, so that the report can set the slowest
//! requests of a run beside what the cores saw at the same time.

use crate::sched::{self, SliceUse};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A wake-up later than this is a pause worth keeping.
const KEEP_OVER: Duration = Duration::from_millis(2);
const TICK: Duration = Duration::from_millis(1);

/// One late wake-up of a meter: when it should have woken and how late it was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pause {
    pub(crate) at: Instant,
    pub(crate) late: Duration,
}

/// What a meter saw: its late wake-ups and, with the memory probe, its timed walks.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) pauses: Vec<Pause>,
    /// When each walk started and how long it took.
    pub(crate) walks: Vec<(Instant, Duration)>,
}

/// Steps of one memory walk, one probe every this many ticks, and the buffer's length (u32s).
const WALK_STEPS: usize = 2_000;
const WALK_EVERY: u32 = 10;
const WALK_LEN: usize = 1 << 20;

/// A buffer whose entries form one cycle through all its indexes (Sattolo's shuffle), so that
/// following it visits memory in an order no prefetcher can guess.
fn cycle(len: usize) -> Vec<u32> {
    let mut buf: Vec<u32> = (0..len as u32).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..len).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.swap(i, (x % i as u64) as usize);
    }
    buf
}

/// Follows `buf` for `steps` steps from index 0.
fn walk(buf: &[u32], steps: usize) -> u32 {
    let mut i = 0usize;
    for _ in 0..steps {
        i = buf[i] as usize;
    }
    i as u32
}

/// A sleeping thread pinned to one core, recording its late wake-ups until finished.
pub(crate) struct Meter {
    stop: Arc<AtomicBool>,
    /// What it saw, and whether it could be pinned to the core it was asked for.
    thread: JoinHandle<(bool, Seen)>,
}

impl Meter {
    /// Starts a meter on `core` (its own thread, moved to that core even when this process is
    /// pinned elsewhere); with `probe_memory`, it also times memory walks.
    pub(crate) fn start(core: usize, probe_memory: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: core });
                let buf = if probe_memory { cycle(WALK_LEN) } else { Vec::new() };
                let mut seen = Seen::default();
                let mut ticks = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let due = Instant::now() + TICK;
                    std::thread::sleep(TICK);
                    let woke = Instant::now();
                    let late = woke.saturating_duration_since(due);
                    if late > KEEP_OVER {
                        seen.pauses.push(Pause { at: due, late });
                    }
                    ticks += 1;
                    if probe_memory && ticks % WALK_EVERY == 0 {
                        std::hint::black_box(walk(&buf, std::hint::black_box(WALK_STEPS)));
                        seen.walks.push((woke, woke.elapsed()));
                    }
                }
                (pinned, seen)
            })
        };
        Self { stop, thread }
    }

    /// Stops the meter and returns what it saw, oldest first (nothing if the thread was not on
    /// the core it was asked for).
    pub(crate) fn finish(self) -> Option<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        let (pinned, seen) = self.thread.join().ok()?;
        pinned.then_some(seen)
    }
}

/// Steal and total time of each core, in clock ticks, from the `cpuN` lines of `/proc/stat`
/// (user nice system idle iowait irq softirq steal ...).
pub(crate) fn parse_proc_stat(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let fields: Vec<u64> = l.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
            // Guest time (fields 9 and 10) is already counted in user and nice.
            let total = fields.iter().take(8).sum();
            (fields.get(7).copied().unwrap_or(0), total)
        })
        .collect()
}

/// Each core's steal and total ticks so far.
pub(crate) fn core_ticks() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/stat").map(|t| parse_proc_stat(&t)).unwrap_or_default()
}

/// The share of `core`'s time the hypervisor stole between two readings, in percent.
pub(crate) fn steal_percent(before: &[(u64, u64)], after: &[(u64, u64)], core: usize) -> Option<f64> {
    let ((s0, t0), (s1, t1)) = (before.get(core)?, after.get(core)?);
    let total = t1.checked_sub(*t0).filter(|&t| t > 0)?;
    Some(s1.saturating_sub(*s0) as f64 / total as f64 * 100.0)
}

/// What the cores saw during one run.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CoreWatch {
    /// Longest late wake-up of a sleeping thread on the server's core, in ms.
    pub(crate) server_core_max_pause_ms: Option<f64>,
    /// The same on the load driver's core.
    pub(crate) driver_core_max_pause_ms: Option<f64>,
    pub(crate) server_core_steal_percent: Option<f64>,
    pub(crate) driver_core_steal_percent: Option<f64>,
    /// The median over the run's slices of the fastest memory walk of each, in µs.
    pub(crate) memory_walk_median_us: Option<f64>,
    /// Share of the slices whose fastest walk took at least [`SLOW_MEMORY`] times the median.
    pub(crate) slow_memory_slices_percent: Option<f64>,
    /// Share of the slices with operations over 10 ms whose memory was that slow (in the slice
    /// or the one before).
    pub(crate) slow_slices_with_slow_memory_percent: Option<f64>,
    /// The median over the run's slices of the server's CPU time per operation answered, in µs.
    pub(crate) server_cpu_per_operation_us: Option<f64>,
    /// The slowest stretches of the run, slowest first.
    pub(crate) slow_stretches: Vec<SlowStretch>,
}

/// A stretch of the run (a fixed slice of time) in which some operations took over 10 ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct SlowStretch {
    /// Seconds from the start of the timed window to the start of the slice.
    pub(crate) at_s: f64,
    /// Operations started in the slice that took over 10 ms.
    pub(crate) slow_operations: u64,
    /// The slowest of them, in ms.
    pub(crate) max_latency_ms: f64,
    /// The longest pause each meter saw in the slice or the one before (a pause delays what
    /// started just before it), in ms.
    pub(crate) server_core_pause_ms: f64,
    pub(crate) driver_core_pause_ms: f64,
    /// The slowest memory of the slice and the one before: fastest walk over the median walk.
    pub(crate) memory_slowdown: Option<f64>,
    /// The server's threads in the slice and the one before: time on a CPU, and time runnable
    /// but waiting for one, in ms.
    pub(crate) server_cpu_ms: Option<f64>,
    pub(crate) server_wait_ms: Option<f64>,
    /// The server's busiest threads there, by name, with their time on a CPU in ms.
    pub(crate) busiest_threads: Vec<(String, f64)>,
    /// The server's CPU time per operation answered there, over the run's median.
    pub(crate) cpu_per_operation: Option<f64>,
}

/// An operation's start, as an offset into the timed window, and how long it took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timed {
    pub(crate) at: Duration,
    pub(crate) took: Duration,
}

/// What counts as a slow operation, and as slow memory.
pub(crate) const SLOW: Duration = Duration::from_millis(10);
pub(crate) const SLOW_MEMORY: f64 = 1.5;
pub(crate) const SLICE: Duration = Duration::from_millis(100);
const KEEP_STRETCHES: usize = 5;
const KEEP_THREADS: usize = 3;

/// The slice of a run an offset into its timed window falls in.
pub(crate) fn slice_of(d: Duration) -> u64 {
    (d.as_micros() / SLICE.as_micros()) as u64
}

/// Offsets of `pauses` into a window that starts at `from` (those before it are dropped).
pub(crate) fn offsets(pauses: &[Pause], from: Instant) -> Vec<(Duration, Duration)> {
    pauses.iter().filter_map(|p| p.at.checked_duration_since(from).map(|at| (at, p.late))).collect()
}

/// Memory speed per slice: the fastest walk of each slice over the median of those, with that
/// median. `walks` are (offset into the window, time of the walk).
pub(crate) struct MemorySpeed {
    pub(crate) median: Duration,
    pub(crate) slowdown: BTreeMap<u64, f64>,
}

impl MemorySpeed {
    pub(crate) fn of(walks: &[(Duration, Duration)]) -> Option<Self> {
        let mut fastest: BTreeMap<u64, Duration> = BTreeMap::new();
        for &(at, took) in walks {
            let e = fastest.entry(slice_of(at)).or_insert(took);
            *e = (*e).min(took);
        }
        let mut sorted: Vec<Duration> = fastest.values().copied().collect();
        sorted.sort_unstable();
        let median = *sorted.get(sorted.len() / 2)?;
        if median.is_zero() {
            return None;
        }
        let slowdown = fastest.into_iter().map(|(slice, d)| (slice, d.as_secs_f64() / median.as_secs_f64())).collect();
        Some(Self { median, slowdown })
    }

    /// The slowest of `slice` and the one before.
    fn around(&self, slice: u64) -> Option<f64> {
        self.slowdown.range(slice.saturating_sub(1)..=slice).map(|(_, f)| *f).reduce(f64::max)
    }
}

/// What was seen during a run, as offsets into its timed window.
pub(crate) struct Observed<'a> {
    /// The operations over [`SLOW`].
    pub(crate) slow: &'a [Timed],
    /// Each meter's pauses: (offset, how late).
    pub(crate) server_pauses: &'a [(Duration, Duration)],
    pub(crate) driver_pauses: &'a [(Duration, Duration)],
    pub(crate) memory: Option<&'a MemorySpeed>,
    /// Steal on the server's and on the driver's core, in percent.
    pub(crate) steal: (Option<f64>, Option<f64>),
    /// What the server's threads did in each slice.
    pub(crate) threads: Option<&'a BTreeMap<u64, SliceUse>>,
    /// How many operations were answered in each slice.
    pub(crate) answered: &'a BTreeMap<u64, u64>,
}

/// Sets the slow operations of a run beside what the meters saw.
pub(crate) fn watch(o: &Observed<'_>) -> CoreWatch {
    let mut by_slice: BTreeMap<u64, (u64, Duration)> = BTreeMap::new();
    for t in o.slow {
        let e = by_slice.entry(slice_of(t.at)).or_insert((0, Duration::ZERO));
        e.0 += 1;
        e.1 = e.1.max(t.took);
    }
    let worst_pause = |pauses: &[(Duration, Duration)], slice: u64| {
        pauses
            .iter()
            .filter(|(at, _)| (slice.saturating_sub(1)..=slice).contains(&slice_of(*at)))
            .map(|(_, late)| *late)
            .max()
            .unwrap_or_default()
    };
    let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
    let max_ms = |p: &[(Duration, Duration)]| p.iter().map(|(_, late)| ms(*late)).fold(0.0, f64::max);
    let percent = |part: usize, whole: usize| (whole > 0).then(|| part as f64 / whole as f64 * 100.0);
    // CPU per operation answered, over a range of slices.
    let cpu_per_op = |threads: &BTreeMap<u64, SliceUse>, from: u64, to: u64| {
        let answered: u64 = o.answered.range(from..=to).map(|(_, n)| n).sum();
        (answered > 0).then(|| sched::over(threads, from, to).total_cpu() / answered as u32)
    };
    let median_cpu_per_op = o.threads.and_then(|threads| {
        let mut per_slice: Vec<Duration> = threads.keys().filter_map(|&s| cpu_per_op(threads, s, s)).collect();
        per_slice.sort_unstable();
        per_slice.get(per_slice.len() / 2).copied().filter(|d| !d.is_zero())
    });
    let mut stretches: Vec<SlowStretch> = by_slice
        .iter()
        .map(|(&slice, &(count, max))| {
            let around = o.threads.map(|t| sched::over(t, slice.saturating_sub(1), slice));
            let mut busiest: Vec<(String, f64)> =
                around.iter().flat_map(|a| a.cpu.iter().map(|(name, d)| (name.clone(), ms(*d)))).filter(|(_, d)| *d > 0.0).collect();
            busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
            busiest.truncate(KEEP_THREADS);
            SlowStretch {
                at_s: (slice * SLICE.as_millis() as u64) as f64 / 1000.0,
                slow_operations: count,
                max_latency_ms: ms(max),
                server_core_pause_ms: ms(worst_pause(o.server_pauses, slice)),
                driver_core_pause_ms: ms(worst_pause(o.driver_pauses, slice)),
                memory_slowdown: o.memory.and_then(|m| m.around(slice)).map(|f| (f * 100.0).round() / 100.0),
                server_cpu_ms: around.as_ref().map(|a| ms(a.total_cpu())),
                server_wait_ms: around.as_ref().map(|a| ms(a.wait)),
                busiest_threads: busiest,
                cpu_per_operation: match (o.threads, median_cpu_per_op) {
                    (Some(t), Some(median)) => cpu_per_op(t, slice.saturating_sub(1), slice)
                        .map(|d| (d.as_secs_f64() / median.as_secs_f64() * 100.0).round() / 100.0),
                    _ => None,
                },
            }
        })
        .collect();
    let slow_memory = |f: f64| f >= SLOW_MEMORY;
    let slow_with_slow_memory = stretches.iter().filter(|s| s.memory_slowdown.is_some_and(slow_memory)).count();
    stretches.sort_by(|a, b| b.max_latency_ms.total_cmp(&a.max_latency_ms));
    let slow_slices = stretches.len();
    stretches.truncate(KEEP_STRETCHES);
    CoreWatch {
        server_core_max_pause_ms: Some(max_ms(o.server_pauses)),
        driver_core_max_pause_ms: Some(max_ms(o.driver_pauses)),
        server_core_steal_percent: o.steal.0,
        driver_core_steal_percent: o.steal.1,
        memory_walk_median_us: o.memory.map(|m| m.median.as_secs_f64() * 1e6),
        slow_memory_slices_percent: o
            .memory
            .and_then(|m| percent(m.slowdown.values().filter(|&&f| slow_memory(f)).count(), m.slowdown.len())),
        slow_slices_with_slow_memory_percent: o.memory.and_then(|_| percent(slow_with_slow_memory, slow_slices)),
        server_cpu_per_operation_us: median_cpu_per_op.map(|d| (d.as_secs_f64() * 1e7).round() / 10.0),
        slow_stretches: stretches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_steal_and_total_per_core() {
        let text = "cpu  10 0 10 100 0 0 0 5 0 0\ncpu0 5 0 5 50 0 0 0 2 7 0\ncpu1 5 0 5 50 0 0 0 3 0 0\nintr 1 2 3\n";
        assert_eq!(parse_proc_stat(text), vec![(2, 62), (3, 63)]);
        let after = vec![(12, 162), (3, 163)];
        assert_eq!(steal_percent(&parse_proc_stat(text), &after, 0), Some(10.0));
        assert_eq!(steal_percent(&parse_proc_stat(text), &after, 1), Some(0.0));
        assert_eq!(steal_percent(&parse_proc_stat(text), &after, 2), None);
    }

    #[test]
    fn slow_operations_are_set_beside_pauses_memory_and_the_servers_threads() {
        let ms = Duration::from_millis;
        let slow = [Timed { at: ms(1_020), took: ms(40) }, Timed { at: ms(1_090), took: ms(140) }, Timed { at: ms(5_500), took: ms(12) }];
        // A server-core pause in the slice before the slow one counts; one far away does not.
        let server = [(ms(950), ms(130)), (ms(3_000), ms(50))];
        let driver = [(ms(5_510), ms(3))];
        // Memory: 100 µs walks in slices 0..=9, a 300 µs one (and a faster one) in slice 10,
        // twice over in 55.
        let us = Duration::from_micros;
        let mut walks: Vec<(Duration, Duration)> = (0..10).map(|i| (ms(i * 100 + 5), us(100))).collect();
        walks.extend([(ms(1_001), us(400)), (ms(1_050), us(300)), (ms(5_450), us(200))]);
        let memory = MemorySpeed::of(&walks).unwrap();
        assert_eq!(memory.median, us(100));
        // The server: one worker on 80 ms of each slice for 1,000 answers (80 µs each), but in
        // slices 9 and 10 the checkpointer took 30 ms of each, the threads waited 25 ms, and
        // half as many operations were answered.
        let threads: BTreeMap<u64, SliceUse> = (0..60)
            .map(|i| {
                let (cpu, wait) = match i {
                    9 | 10 => (vec![("worker", 60), ("sqlite-checkpoint", 30)], 25),
                    _ => (vec![("worker", 80)], 0),
                };
                (i, SliceUse { cpu: cpu.into_iter().map(|(n, d)| (n.to_owned(), ms(d))).collect(), wait: ms(wait) })
            })
            .collect();
        let answered: BTreeMap<u64, u64> = (0..60).map(|i| (i, if i == 9 || i == 10 { 500 } else { 1_000 })).collect();
        let observed = Observed {
            slow: &slow,
            server_pauses: &server,
            driver_pauses: &driver,
            memory: Some(&memory),
            steal: (Some(0.5), None),
            threads: Some(&threads),
            answered: &answered,
        };
        let w = watch(&observed);
        assert_eq!(
            w.slow_stretches,
            vec![
                SlowStretch {
                    at_s: 1.0,
                    slow_operations: 2,
                    max_latency_ms: 140.0,
                    server_core_pause_ms: 130.0,
                    driver_core_pause_ms: 0.0,
                    memory_slowdown: Some(3.0),
                    server_cpu_ms: Some(180.0),
                    server_wait_ms: Some(50.0),
                    busiest_threads: vec![("worker".into(), 120.0), ("sqlite-checkpoint".into(), 60.0)],
                    cpu_per_operation: Some(2.25),
                },
                SlowStretch {
                    at_s: 5.5,
                    slow_operations: 1,
                    max_latency_ms: 12.0,
                    server_core_pause_ms: 0.0,
                    driver_core_pause_ms: 3.0,
                    memory_slowdown: Some(2.0),
                    server_cpu_ms: Some(160.0),
                    server_wait_ms: Some(0.0),
                    busiest_threads: vec![("worker".into(), 160.0)],
                    cpu_per_operation: Some(1.0),
                },
            ]
        );
        assert_eq!((w.server_core_max_pause_ms, w.driver_core_max_pause_ms), (Some(130.0), Some(3.0)));
        assert_eq!((w.server_core_steal_percent, w.driver_core_steal_percent), (Some(0.5), None));
        assert_eq!(w.server_cpu_per_operation_us, Some(80.0));
        // 2 of the 12 slices with walks were slow; both slow stretches were beside slow memory.
        assert!((w.slow_memory_slices_percent.unwrap() - 200.0 / 12.0).abs() < 1e-9);
        assert_eq!(w.slow_slices_with_slow_memory_percent, Some(100.0));
        // Without walks or thread readings, nothing is said about memory or the threads.
        let w = watch(&Observed { memory: None, threads: None, ..observed });
        assert_eq!((w.memory_walk_median_us, w.slow_memory_slices_percent, w.slow_slices_with_slow_memory_percent), (None, None, None));
        assert_eq!(
            (w.server_cpu_per_operation_us, w.slow_stretches[0].server_cpu_ms, w.slow_stretches[0].cpu_per_operation),
            (None, None, None)
        );
        assert!(w.slow_stretches[0].busiest_threads.is_empty());
        assert!(MemorySpeed::of(&[]).is_none());
    }

    #[test]
    fn the_walk_visits_every_entry_once() {
        let buf = cycle(1 << 12);
        let mut seen = vec![false; buf.len()];
        let mut i = 0usize;
        for _ in 0..buf.len() {
            assert!(!seen[i], "index {i} came round before the cycle closed");
            seen[i] = true;
            i = buf[i] as usize;
        }
        assert_eq!(i, 0);
        assert_eq!(walk(&buf, buf.len()), 0);
    }

    #[test]
    fn a_meter_pins_itself_runs_and_stops() {
        // Pinned to core 0, which every Linux machine has. This only checks that the meter runs
        // and stops; how late it wakes depends on the machine, so nothing is asserted about it.
        // Whether a walk fits in before the stop depends on how fast the buffer is built (a
        // debug build on a busy machine may take longer than the sleep), so only the pinning
        // and the stop are asserted; the walk itself is tested above.
        let m = Meter::start(0, true);
        std::thread::sleep(Duration::from_millis(20));
        assert!(m.finish().is_some(), "the meter could not be pinned to core 0 or did not stop");
    }
}

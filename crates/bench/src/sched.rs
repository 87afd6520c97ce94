//! What each of the server's threads did during a run, slice by slice: its time on a CPU and
//! its time runnable but waiting for one, as the scheduler counts them for every task in
//! `/proc/PID/task/TID/schedstat` (nanoseconds).
//!
//! In a slow stretch of a paced run this tells three stories apart: the server had the core
//! and did less with it (more CPU per operation than usual: the machine was slower, or the
//! work was), another thread of the server took the core (the SQLite checkpointer, say), or
//! something outside the server took it (the server's threads waited).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the threads are read. Each reading is a few file reads per thread, on the
/// driver's core.
const EVERY: Duration = Duration::from_millis(10);

/// Time on a CPU and time waiting on a run queue, in ns: the first two fields of a
/// `schedstat` file (the third is the number of time slices).
pub(crate) fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    Some((fields.next()?.ok()?, fields.next()?.ok()?))
}

/// One reading: when, and each thread's totals so far (thread id, on CPU, waiting).
struct Reading {
    at: Instant,
    threads: HashMap<u32, (u64, u64)>,
}

/// A thread that reads the server's threads every [`EVERY`] until finished.
pub(crate) struct ThreadSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Sampled>,
}

/// The readings of a run, with the name of each thread seen.
#[derive(Default)]
pub(crate) struct Sampled {
    readings: Vec<Reading>,
    names: HashMap<u32, String>,
}

impl ThreadSampler {
    /// Starts reading the threads of `pid` from a thread pinned to `core`.
    pub(crate) fn start(pid: u32, core: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
                let task_dir = format!("/proc/{pid}/task");
                let mut sampled = Sampled::default();
                // At least one reading, however soon the sampler is stopped.
                loop {
                    let at = Instant::now();
                    let mut threads = HashMap::new();
                    for entry in std::fs::read_dir(&task_dir).into_iter().flatten().flatten() {
                        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
                        let Some(times) = std::fs::read_to_string(entry.path().join("schedstat")).ok().and_then(|t| parse_schedstat(&t))
                        else {
                            continue;
                        };
                        threads.insert(tid, times);
                        sampled
                            .names
                            .entry(tid)
                            .or_insert_with(|| std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_owned());
                    }
                    sampled.readings.push(Reading { at, threads });
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(EVERY.saturating_sub(at.elapsed()));
                }
                sampled
            })
        };
        Self { stop, thread }
    }

    /// Stops reading and returns the readings.
    pub(crate) fn finish(self) -> Option<Sampled> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok()
    }
}

/// What the server's threads did in one slice of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SliceUse {
    /// Time on a CPU, per thread name (threads of the same name, such as a runtime's workers,
    /// added up).
    pub(crate) cpu: BTreeMap<String, Duration>,
    /// Time the threads were runnable but waited for a CPU, all threads together.
    pub(crate) wait: Duration,
}

impl SliceUse {
    pub(crate) fn total_cpu(&self) -> Duration {
        self.cpu.values().sum()
    }

    fn add(&mut self, other: &SliceUse) {
        for (name, d) in &other.cpu {
            *self.cpu.entry(name.clone()).or_default() += *d;
        }
        self.wait += other.wait;
    }
}

impl Sampled {
    /// What the threads did in each slice of `slice` length from `from` on (readings before
    /// `from` only serve as the base of the first). What a thread did between two readings
    /// goes to the slice of the later one.
    pub(crate) fn per_slice(&self, from: Instant, slice: Duration) -> BTreeMap<u64, SliceUse> {
        let mut out: BTreeMap<u64, SliceUse> = BTreeMap::new();
        for pair in self.readings.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            let Some(offset) = after.at.checked_duration_since(from) else { continue };
            let use_ = out.entry((offset.as_nanos() / slice.as_nanos()) as u64).or_default();
            for (tid, &(cpu, wait)) in &after.threads {
                // A thread born between the readings did all of its work in between.
                let (cpu0, wait0) = before.threads.get(tid).copied().unwrap_or((0, 0));
                let name = self.names.get(tid).map_or("?", String::as_str);
                *use_.cpu.entry(name.to_owned()).or_default() += Duration::from_nanos(cpu.saturating_sub(cpu0));
                use_.wait += Duration::from_nanos(wait.saturating_sub(wait0));
            }
        }
        out
    }
}

/// What the threads did in the slices `from..=to`, added up.
pub(crate) fn over(slices: &BTreeMap<u64, SliceUse>, from: u64, to: u64) -> SliceUse {
    let mut total = SliceUse::default();
    for (_, s) in slices.range(from..=to) {
        total.add(s);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_time_on_cpu_and_waiting() {
        assert_eq!(parse_schedstat("431734 1574554 3\n"), Some((431_734, 1_574_554)));
        assert_eq!(parse_schedstat("431734"), None);
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn readings_become_use_per_slice_and_thread_name() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let reading = |at: u64, threads: &[(u32, u64, u64)]| Reading {
            at: t0 + ms(at),
            threads: threads.iter().map(|&(tid, cpu, wait)| (tid, (cpu * 1_000_000, wait * 1_000_000))).collect(),
        };
        let sampled = Sampled {
            readings: vec![
                // Before the window: only a base.
                reading(0, &[(1, 5, 0), (2, 5, 0)]),
                reading(50, &[(1, 40, 1), (2, 45, 0)]),
                reading(150, &[(1, 100, 1), (2, 60, 0), (3, 30, 20)]),
            ],
            names: [(1, "worker"), (2, "worker"), (3, "sqlite-checkpoint")].into_iter().map(|(t, n)| (t, n.to_owned())).collect(),
        };
        let slices = sampled.per_slice(t0 + ms(20), ms(100));
        // 50 ms is 30 ms into the window: slice 0. 150 ms is 130 ms in: slice 1, where thread
        // 3 was born.
        assert_eq!(slices[&0].cpu["worker"], ms(75));
        assert_eq!(slices[&0].wait, ms(1));
        assert_eq!(slices[&1].cpu["worker"], ms(75));
        assert_eq!(slices[&1].cpu["sqlite-checkpoint"], ms(30));
        assert_eq!(slices[&1].wait, ms(20));
        let both = over(&slices, 0, 1);
        assert_eq!(both.total_cpu(), ms(180));
        assert_eq!(both.wait, ms(21));
        assert_eq!(over(&slices, 5, 9), SliceUse::default());
    }

    #[test]
    fn this_process_threads_can_be_read() {
        let sampler = ThreadSampler::start(std::process::id(), 0);
        let sampled = sampler.finish().unwrap();
        assert!(!sampled.readings.is_empty());
        assert!(sampled.readings[0].threads.contains_key(&std::process::id()), "the main thread is a task of its own process");
    }
}

//! The log writer: a request appends its whole line to a shared buffer and goes on; a thread
//! writes the buffer out in one system call every few milliseconds. No allocation, system call
//! or thread wake-up per line while lines keep coming (the writer thread is woken only by the
//! first line after it went idle), and a line that would overfill the buffer is dropped and
//! counted rather than make a request wait on the terminal or the disk.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Capacity a buffer keeps between batches (a few batches at full load); more is freed.
const KEPT_CAPACITY: usize = 256 << 10;

/// A handle for appending lines; clones share the buffer.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Bytes the buffer may hold before lines are dropped.
    limit: usize,
    dropped: AtomicU64,
    /// The writer thread, to wake it (set as it starts, before any line can be appended).
    thread: OnceLock<std::thread::Thread>,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer thread found nothing to write and sleeps until woken.
    idle: bool,
    stop: bool,
}

/// Stops the writer thread when dropped, after it wrote every line appended before.
#[must_use = "dropping the guard stops the log writer"]
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the writer thread: what is appended reaches `sink` within `interval`, in order,
    /// each line whole.
    pub fn start(mut sink: impl Write + Send + 'static, limit: usize, interval: Duration) -> (Self, WriterGuard) {
        let shared =
            Arc::new(Shared { pending: Mutex::default(), limit, dropped: AtomicU64::new(0), thread: OnceLock::new() });
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tooltool-log".into())
            .spawn(move || {
                let shared = state;
                let mut batch = Vec::new();
                loop {
                    let stop = {
                        let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
                        if pending.lines.is_empty() && !pending.stop {
                            pending.idle = true;
                        }
                        std::mem::swap(&mut pending.lines, &mut batch);
                        pending.stop
                    };
                    if batch.is_empty() && !stop {
                        std::thread::park();
                        continue;
                    }
                    // Nowhere to report a failed write to: the log is where it would go.
                    let _ = sink.write_all(&batch).and_then(|()| sink.flush());
                    batch.clear();
                    // A stall may have grown the buffers to the limit; give that back once it is over.
                    batch.shrink_to(KEPT_CAPACITY);
                    if stop {
                        return;
                    }
                    std::thread::park_timeout(interval);
                }
            })
            .expect("the log writer thread starts");
        let _ = shared.thread.set(thread.thread().clone());
        (Self { shared: shared.clone() }, WriterGuard { shared, thread: Some(thread) })
    }

    /// Appends `line` (one or more whole lines), or drops and counts it if the buffer is full.
    pub fn append(&self, line: &[u8]) {
        let wake = {
            let mut pending = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.lines.len() + line.len() > self.shared.limit {
                drop(pending);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pending.lines.extend_from_slice(line);
            std::mem::take(&mut pending.idle)
        };
        if let Some(thread) = self.shared.thread.get().filter(|_| wake) {
            thread.unpark();
        }
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// tracing's formatter writes each event with one `write_all`: one whole line per `write`.
impl Write for &LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that hands each batch to the test, and can be held still like a stalled disk.
    struct Sink {
        batches: mpsc::Sender<Vec<u8>>,
        hold: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _held = self.hold.lock().unwrap();
            self.batches.send(buf.to_vec()).unwrap();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn writer(limit: usize) -> (LogWriter, WriterGuard, mpsc::Receiver<Vec<u8>>, Arc<Mutex<()>>) {
        let (tx, rx) = mpsc::channel();
        let hold = Arc::new(Mutex::new(()));
        let (w, guard) = LogWriter::start(Sink { batches: tx, hold: hold.clone() }, limit, Duration::from_millis(2));
        (w, guard, rx, hold)
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_in_order_and_the_guard_flushes_the_rest() {
        let (w, guard, rx, _) = writer(1 << 20);
        std::thread::scope(|s| {
            for t in 0..4 {
                let w = w.clone();
                s.spawn(move || {
                    for i in 0..2000 {
                        w.append(format!("thread={t} line={i} {}\n", "x".repeat(i % 50)).as_bytes());
                    }
                });
            }
        });
        drop(guard);
        let out: Vec<u8> = rx.try_iter().flatten().collect();
        let out = String::from_utf8(out).unwrap();
        let mut next = [0usize; 4];
        for line in out.lines() {
            let (t, rest) = line.strip_prefix("thread=").unwrap().split_once(" line=").unwrap();
            let (i, pad) = rest.split_once(' ').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines in order");
            assert_eq!(pad, "x".repeat(i % 50), "{line}");
            next[t] += 1;
        }
        assert_eq!(next, [2000; 4], "every line written by the time the guard is dropped");
        assert_eq!(w.dropped(), 0);
    }

    #[test]
    fn a_stalled_sink_makes_lines_drop_and_count_never_wait() {
        let (w, guard, rx, hold) = writer(100);
        let held = hold.lock().unwrap();
        w.append(b"first\n");
        // The writer thread takes "first" and blocks in the sink: the buffer fills behind it.
        let line = b"0123456789abcdefghi\n"; // 20 bytes: five fit in the 100-byte buffer
        let mut sent = 0;
        while w.dropped() == 0 {
            w.append(line);
            sent += 1;
            assert!(sent < 1000, "the buffer never filled");
        }
        for _ in 0..10 {
            w.append(line);
        }
        let dropped = w.dropped();
        drop(held);
        drop(guard);
        let out: Vec<u8> = rx.try_iter().flatten().collect();
        let out = String::from_utf8(out).unwrap();
        let kept = out.lines().filter(|l| l.as_bytes() == &line[..19]).count();
        assert_eq!(kept as u64 + dropped, sent + 10, "every line is either written whole or counted");
        assert!(out.lines().all(|l| l == "first" || l.as_bytes() == &line[..19]), "{out}");
        assert!(kept <= 10, "the buffer held at most 100 bytes while the sink was stalled: {kept}");
    }
}

//! What the user sees: progress bars (indicatif) on a terminal, plain lines otherwise; `-q`
//! shows only errors, `-v` adds details. [`Reporter`] is the command line's implementation of
//! the library's [`Progress`].

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tooltool::progress::{Level, Progress, Transfer};

/// How much to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// One line per file.
    Normal,
    /// Details too.
    Verbose,
}

/// Where plain lines go.
pub type Sink = Arc<Mutex<dyn Write + Send>>;

/// Reports progress: bars on a terminal, lines to stderr (or to a sink, in tests).
#[derive(Clone)]
pub struct Reporter {
    verbosity: Verbosity,
    bars: Option<MultiProgress>,
    sink: Option<Sink>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").field("verbosity", &self.verbosity).field("bars", &self.bars.is_some()).finish()
    }
}

impl Reporter {
    /// Bars when stderr is a terminal and not quiet, plain lines otherwise.
    pub fn new(verbosity: Verbosity) -> Self {
        let bars = (verbosity > Verbosity::Quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { verbosity, bars, sink: None }
    }

    /// Plain lines into `sink` only.
    pub fn to_sink(verbosity: Verbosity, sink: Sink) -> Self {
        Self { verbosity, bars: None, sink: Some(sink) }
    }

    /// An error, always shown.
    pub fn error(&self, msg: &str) {
        self.message(Level::Error, msg);
    }

    /// A normal message.
    pub fn info(&self, msg: &str) {
        self.message(Level::Info, msg);
    }

    /// A detail, shown with `-v`.
    pub fn detail(&self, msg: &str) {
        self.message(Level::Detail, msg);
    }

    fn line(&self, msg: &str) {
        match (&self.bars, &self.sink) {
            (Some(m), _) => {
                let _ = m.println(msg);
            }
            (None, Some(sink)) => {
                let _ = writeln!(sink.lock().expect("sink lock"), "{msg}");
            }
            (None, None) => eprintln!("{msg}"),
        }
    }
}

impl Progress for Reporter {
    fn message(&self, level: Level, text: &str) {
        let shown = match (level, self.verbosity) {
            (Level::Error, _) => true,
            (Level::Warn | Level::Info, v) => v >= Verbosity::Normal,
            (Level::Detail, v) => v >= Verbosity::Verbose,
        };
        if !shown {
            return;
        }
        match level {
            Level::Error => self.line(&format!("error: {text}")),
            Level::Warn => self.line(&format!("warning: {text}")),
            Level::Info | Level::Detail => self.line(text),
        }
    }

    fn transfer(&self, name: &str, size: Option<u64>) -> Arc<dyn Transfer> {
        let Some(m) = &self.bars else { return Arc::new(()) };
        let pb = match size {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg:30!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg:30!} {spinner} {bytes:>10} {bytes_per_sec:>12}")
                    .expect("valid template"),
            ),
        };
        let pb = m.add(pb);
        pb.set_message(name.to_owned());
        pb.enable_steady_tick(Duration::from_millis(200));
        Arc::new(Bar(pb))
    }
}

/// One progress bar, cleared when the transfer ends.
struct Bar(ProgressBar);

impl Transfer for Bar {
    fn set(&self, pos: u64) {
        self.0.set_position(pos);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

//! What the user sees: progress bars (indicatif) on a terminal, plain lines otherwise;
//! `-q` shows only errors, `-v` adds details.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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

/// Reports progress to stderr.
#[derive(Clone)]
pub struct Reporter {
    verbosity: Verbosity,
    bars: Option<MultiProgress>,
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
        Self { verbosity, bars }
    }

    /// Plain lines only (tests, pipes).
    pub fn plain(verbosity: Verbosity) -> Self {
        Self { verbosity, bars: None }
    }

    /// The verbosity.
    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    /// A normal message.
    pub fn info(&self, msg: &str) {
        if self.verbosity >= Verbosity::Normal {
            self.line(msg);
        }
    }

    /// A detail, shown with `-v`.
    pub fn detail(&self, msg: &str) {
        if self.verbosity >= Verbosity::Verbose {
            self.line(msg);
        }
    }

    /// An error, always shown.
    pub fn error(&self, msg: &str) {
        self.line(&format!("error: {msg}"));
    }

    /// A warning, shown unless quiet.
    pub fn warn(&self, msg: &str) {
        if self.verbosity >= Verbosity::Normal {
            self.line(&format!("warning: {msg}"));
        }
    }

    fn line(&self, msg: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }

    /// A bar for one transfer of `size` bytes (unknown when `None`).
    pub fn bar(&self, name: &str, size: Option<u64>) -> Bar {
        let Some(m) = &self.bars else { return Bar(None) };
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
        Bar(Some(pb))
    }
}

/// One progress bar (or nothing, when not on a terminal).
#[derive(Debug)]
pub struct Bar(Option<ProgressBar>);

impl Bar {
    /// Sets the position (bytes done).
    pub fn set(&self, pos: u64) {
        if let Some(pb) = &self.0 {
            pb.set_position(pos);
        }
    }

    /// Adds bytes done.
    pub fn inc(&self, n: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(n);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

//! How the workflows tell their caller what happens: a small trait, [`Progress`], that the
//! command line implements with progress bars and lines on stderr, and that tests and other
//! library users leave [`Silent`] or record. The library itself never writes to a terminal.

use std::sync::Arc;

/// How important a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something went wrong but is handled (a retry, a replaced file).
    Warn,
    /// One line per file: what happened to it.
    Info,
    /// Details (`-v`).
    Detail,
}

/// Receives the messages and the byte counts of transfers. Implementations must be cheap:
/// [`Transfer::advance`] is called for every chunk received or sent.
pub trait Progress: Send + Sync {
    /// A message about the run or one file.
    fn message(&self, level: Level, text: &str);

    /// A transfer of `name` starts; `size` when known. The returned handle receives the byte
    /// counts and is dropped when the transfer ends.
    fn transfer(&self, name: &str, size: Option<u64>) -> Arc<dyn Transfer> {
        let _ = (name, size);
        Arc::new(())
    }
}

/// The byte count of one transfer.
pub trait Transfer: Send + Sync {
    /// The transfer (re)starts at `pos` bytes (a resumed or restarted download).
    fn set(&self, pos: u64);
    /// `n` more bytes were moved.
    fn advance(&self, n: u64);
}

impl Transfer for () {
    fn set(&self, _pos: u64) {}
    fn advance(&self, _n: u64) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn message(&self, _level: Level, _text: &str) {}
}

/// Shorthands for the workflows.
pub(crate) trait ProgressExt {
    fn error(&self, text: &str);
    fn warn(&self, text: &str);
    fn info(&self, text: &str);
    fn detail(&self, text: &str);
}

impl<P: Progress + ?Sized> ProgressExt for P {
    fn error(&self, text: &str) {
        self.message(Level::Error, text);
    }
    fn warn(&self, text: &str) {
        self.message(Level::Warn, text);
    }
    fn info(&self, text: &str) {
        self.message(Level::Info, text);
    }
    fn detail(&self, text: &str) {
        self.message(Level::Detail, text);
    }
}

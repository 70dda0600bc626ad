//! Reading a log back, for display. Reading does not verify: use
//! [`verify`](crate::verify) for that.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::event::{Event, SignedHead, HEAD_PREFIX, MAX_LINE};
use crate::verify::{Problem, VerifyError};

/// One line of a log.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// An event.
    Event(Event),
    /// The signed head (the last line of a closed log).
    Head(SignedHead),
}

/// Iterates over the lines of a log, parsed; errors name the line.
#[derive(Debug)]
pub struct EventReader<R> {
    r: R,
    path: Option<PathBuf>,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl EventReader<BufReader<File>> {
    /// Opens the log at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VerifyError> {
        let path = path.as_ref();
        let f = File::open(path).map_err(|e| VerifyError::Io {
            path: Some(path.to_owned()),
            source: e,
        })?;
        let mut r = EventReader::new(BufReader::with_capacity(1 << 16, f));
        r.path = Some(path.to_owned());
        Ok(r)
    }
}

impl<R: BufRead> EventReader<R> {
    /// Reads a log from `r`.
    pub fn new(r: R) -> Self {
        EventReader {
            r,
            path: None,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    fn bad(&mut self, problem: Problem) -> Option<Result<Entry, VerifyError>> {
        self.done = true;
        Some(Err(VerifyError::Line {
            line: self.line,
            problem,
        }))
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = Result<Entry, VerifyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.buf.clear();
        let limit = MAX_LINE as u64 + 1;
        match (&mut self.r).take(limit).read_until(b'\n', &mut self.buf) {
            Ok(0) => {
                self.done = true;
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.done = true;
                return Some(Err(VerifyError::Io {
                    path: self.path.clone(),
                    source: e,
                }));
            }
        }
        self.line += 1;
        let complete = self.buf.last() == Some(&b'\n');
        if complete {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            return self.bad(Problem::TooLong);
        }
        let parsed = if self.buf.starts_with(HEAD_PREFIX) {
            serde_json::from_slice::<SignedHead>(&self.buf).map(Entry::Head)
        } else {
            serde_json::from_slice::<Event>(&self.buf).map(Entry::Event)
        };
        match parsed {
            Ok(e) => Some(Ok(e)),
            Err(_) if !complete => self.bad(Problem::PartialLine),
            Err(e) => self.bad(Problem::Malformed {
                column: e.column().max(1),
                expected: "an event or head line",
            }),
        }
    }
}

/// All events of the log at `path`, in order, without the head.
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<Event>, VerifyError> {
    let mut out = Vec::new();
    for entry in EventReader::open(path)? {
        if let Entry::Event(e) = entry? {
            out.push(e);
        }
    }
    Ok(out)
}

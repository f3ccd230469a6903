//! Errors from loading `relay.yaml`, and the one-line problems they carry.
//!
//! Every problem renders as `FILE:LINE:COLUMN: KEY.PATH: message`, one per line, so
//! `textus-relay check` can print [`ConfigError`]'s `Display` as is and editors can jump
//! to each location.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        /// The file that was to be read.
        path: PathBuf,
        /// Why it could not be.
        #[source]
        source: io::Error,
    },
    /// The file is not well-formed YAML; parsing stopped at the first error.
    #[error("{}", Rendered { file, problems: std::slice::from_ref(problem) })]
    Syntax {
        /// The file, as given to the loader.
        file: PathBuf,
        /// Where the parser stopped, and why.
        problem: Problem,
    },
    /// The file is valid YAML but breaks the schema or its rules; every problem found.
    #[error("{}", Rendered { file, problems })]
    Invalid {
        /// The file, as given to the loader.
        file: PathBuf,
        /// At least one; sorted by position.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The located problems (empty for [`ConfigError::Read`]).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Syntax { problem, .. } => std::slice::from_ref(problem),
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

/// One mistake in the file, at the place a reader should look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Dotted key path, e.g. `targets.warehouse.retry.initial` or `routes[1].to[0]`;
    /// empty for the document itself.
    pub key: String,
    /// Lower-case text saying what is wrong; never contains a secret.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `LINE:COLUMN: KEY: message` (the key part is left out when the key is empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// The multi-line text of a list of problems in one file.
struct Rendered<'a> {
    file: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{problem}", self.file.display())?;
        }
        Ok(())
    }
}

/// Collects problems during one validation pass.
#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn push(&mut self, at: Pos, key: &str, message: impl Into<String>) {
        self.0.push(Problem {
            line: at.line,
            column: at.column,
            key: clean(key),
            message: clean(&message.into()),
        });
    }

    pub(super) fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems in reading order (by position; the pass order breaks ties).
    pub(super) fn into_sorted(mut self) -> Vec<Problem> {
        self.0.sort_by_key(|p| (p.line, p.column));
        self.0
    }
}

/// A 1-based line and column in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Pos {
    pub(super) line: usize,
    pub(super) column: usize,
}

/// Escapes control characters so that one problem is always exactly one line, whatever
/// a key or quoted value in the file contains.
pub(super) fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(line: usize, key: &str, message: &str) -> Problem {
        Problem {
            line,
            column: 3,
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }

    #[test]
    fn invalid_renders_one_line_per_problem() {
        let err = ConfigError::Invalid {
            file: PathBuf::from("relay.yaml"),
            problems: vec![
                problem(4, "source.secrets", "at least one secret is required"),
                problem(9, "", "expected a mapping"),
            ],
        };
        assert_eq!(
            err.to_string(),
            "relay.yaml:4:3: source.secrets: at least one secret is required\n\
             relay.yaml:9:3: expected a mapping"
        );
        assert_eq!(err.problems().len(), 2);
    }

    #[test]
    fn syntax_renders_like_a_problem() {
        let err = ConfigError::Syntax {
            file: PathBuf::from("/etc/relay.yaml"),
            problem: problem(2, "listen", "unclosed bracket"),
        };
        assert_eq!(
            err.to_string(),
            "/etc/relay.yaml:2:3: listen: unclosed bracket"
        );
    }

    #[test]
    fn control_characters_cannot_break_lines() {
        let mut problems = Problems::default();
        let at = Pos { line: 1, column: 1 };
        problems.push(at, "a\nb", "bad\r\nvalue");
        let [p] = problems.into_sorted().try_into().expect("one problem");
        assert_eq!(p.key, "a\\nb");
        assert_eq!(p.message, "bad\\r\\nvalue");
    }

    #[test]
    fn problems_are_sorted_by_position() {
        let mut problems = Problems::default();
        problems.push(Pos { line: 5, column: 1 }, "b", "second");
        problems.push(Pos { line: 2, column: 7 }, "a", "first");
        let keys: Vec<_> = problems.into_sorted().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["a", "b"]);
    }
}

//! Configuration errors. A peer's misbehaviour is never an error here: it is a
//! [`crate::Verdict`] or a [`crate::Event`].

use thiserror::Error;

/// A configuration that cannot work.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// a field is out of its allowed range
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// the field, as named in the config struct
        field: &'static str,
        /// what is wrong with it
        reason: &'static str,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, reason: &'static str) -> Self {
        Self::Invalid { field, reason }
    }
}

//! Core errors as Python exceptions: the message is the CLI's one line (what, then why), the
//! class says what kind of failure it is. The classes live in `pixelquery/errors.py` so they
//! can also derive from the matching built-in (`ValueError`, `LookupError`, `MemoryError`).

use pixelquery::ingest::discover;
use pixelquery::ingest::pipeline;
use pixelquery::query::{engine, region};
use pixelquery::store;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Which exception class an error becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A warehouse, file, version, product or data that is not there: `NotFoundError`.
    NotFound,
    /// A query that found nothing: `NoDataError` (a `NotFoundError`).
    NoData,
    /// A bad argument, option, name, expression or geometry: `InvalidInputError`.
    InvalidInput,
    /// Another writer or existing data disagrees: `ConflictError`.
    Conflict,
    /// The result would not fit the size limit: `TooLargeError`.
    TooLarge,
    /// Anything else (corrupt files, I/O): `PixelQueryError`.
    Other,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::NotFound => "NotFoundError",
            Kind::NoData => "NoDataError",
            Kind::InvalidInput => "InvalidInputError",
            Kind::Conflict => "ConflictError",
            Kind::TooLarge => "TooLargeError",
            Kind::Other => "PixelQueryError",
        }
    }
}

/// An error on its way to Python: its kind and its one-line message. `Send`, so it can leave
/// code that ran without the GIL.
#[derive(Debug)]
pub struct Error {
    /// The exception class.
    pub kind: Kind,
    /// The message (the CLI prints it after `error: `).
    pub message: String,
}

/// Result alias for the bindings.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A bad argument.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::InvalidInput,
            message: message.into(),
        }
    }

    fn new(kind: Kind, error: &dyn std::fmt::Display) -> Error {
        Error {
            kind,
            message: error.to_string(),
        }
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        Python::attach(|py| {
            let class = py
                .import("pixelquery.errors")
                .and_then(|m| m.getattr(e.kind.class_name()));
            match class.and_then(|c| c.call1((e.message.clone(),))) {
                Ok(instance) => PyErr::from_value(instance),
                Err(_) => PyRuntimeError::new_err(e.message),
            }
        })
    }
}

fn store_kind(e: &store::Error) -> Kind {
    use store::Error as E;
    match e {
        E::NotAWarehouse { .. }
        | E::MissingFile { .. }
        | E::UnknownVersion { .. }
        | E::Vacuumed { .. } => Kind::NotFound,
        E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Kind::NotFound,
        E::InvalidName { .. } | E::Duration { .. } => Kind::InvalidInput,
        E::AlreadyExists { .. }
        | E::GridMismatch { .. }
        | E::ProductConflict { .. }
        | E::CompactionConflict { .. }
        | E::TooManyConflicts { .. } => Kind::Conflict,
        _ => Kind::Other,
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Error {
        Error::new(store_kind(&e), &e)
    }
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Error {
        use engine::Error as E;
        let kind = match &e {
            E::Store(s) => store_kind(s),
            E::NoData(_) => Kind::NoData,
            E::TooLarge { .. } => Kind::TooLarge,
            E::Region(_)
            | E::Expr(_)
            | E::Crs(_)
            | E::UnknownBand { .. }
            | E::MissingBand { .. }
            | E::Invalid(_)
            | E::SampleType { .. } => Kind::InvalidInput,
            _ => Kind::Other,
        };
        Error::new(kind, &e)
    }
}

impl From<region::Error> for Error {
    fn from(e: region::Error) -> Error {
        Error::new(Kind::InvalidInput, &e)
    }
}

impl From<pixelquery::crs::Error> for Error {
    fn from(e: pixelquery::crs::Error) -> Error {
        Error::new(Kind::InvalidInput, &e)
    }
}

impl From<pixelquery::grid::Error> for Error {
    fn from(e: pixelquery::grid::Error) -> Error {
        Error::new(Kind::InvalidInput, &e)
    }
}

fn discover_kind(e: &discover::Error) -> Kind {
    match e {
        discover::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Kind::NotFound
        }
        discover::Error::Nothing { .. } => Kind::NotFound,
        discover::Error::Io { .. } => Kind::Other,
        _ => Kind::InvalidInput,
    }
}

impl From<discover::Error> for Error {
    fn from(e: discover::Error) -> Error {
        Error::new(discover_kind(&e), &e)
    }
}

impl Error {
    /// The exception of a pipeline error, with the message of `shown` (the error it came in).
    fn from_pipeline(e: &pipeline::Error, shown: &dyn std::fmt::Display) -> Error {
        use pipeline::Error as E;
        let kind = match e {
            E::Discover(d) => discover_kind(d),
            E::Store(s) => store_kind(s),
            E::Profile(_) | E::Grid(_) | E::Option(_) => Kind::InvalidInput,
            _ => Kind::Other,
        };
        Error::new(kind, shown)
    }
}

impl From<pipeline::Error> for Error {
    fn from(e: pipeline::Error) -> Error {
        Error::from_pipeline(&e, &e)
    }
}

impl From<pixelquery::ingest::stac::run::Error> for Error {
    fn from(e: pixelquery::ingest::stac::run::Error) -> Error {
        use pixelquery::ingest::stac::run::Error as E;
        use pixelquery::ingest::stac::search::Error as S;
        let kind = match &e {
            E::Ingest(p) => return Error::from_pipeline(p, &e),
            E::Search(S::UnknownCollection { .. }) | E::NoSearches { .. } => Kind::NotFound,
            E::Search(S::Argument { .. } | S::Filter(_))
            | E::Profile(_)
            | E::Option(_)
            | E::StoredSearch { .. } => Kind::InvalidInput,
            E::Store(s) => store_kind(s),
            _ => Kind::Other,
        };
        Error::new(kind, &e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => Kind::NotFound,
            _ => Kind::Other,
        };
        Error::new(kind, &e)
    }
}

//! Ghostworks domain: the types and rules of the catalog, with no I/O.
//!
//! Input arrives as loosely typed data and leaves this crate as values that are valid by
//! construction (parse, don't validate). Every limit lives in [`limits`] so the API, the docs
//! and the tests name one number.

pub mod account;
pub mod artifact;
pub mod cursor;
pub mod errors;
pub mod limits;
pub mod role;
pub mod workspace;

pub use errors::{FieldError, ValidationErrors};
pub use role::Role;

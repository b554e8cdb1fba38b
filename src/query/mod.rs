//! Queries over the warehouse: band math now; cubes, masks, composites and exports as the
//! warehouse lands.

pub mod expr;

pub use expr::{preset, Expr, ExprError};

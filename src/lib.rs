//! reentrancy-audit: finds reentrancy and concurrency hazards in JavaScript,
//! TypeScript and Python backends.
//!
//! discover → parse → lower (language-neutral function model) → rules →
//! findings → filter → report.

pub mod analysis;
pub mod catalog;
pub mod discover;
pub mod filter;
pub mod finding;
pub mod lang;
pub mod model;
pub mod report;
pub mod rules;
pub mod scan;
pub mod suggest;

//! Analyses shared by several rules, built on the function model: database
//! operations, SQL text, external side effects, guards and locks, await
//! points and shared state, idempotency caches.

pub mod awaits;
pub mod cache;
pub mod db;
pub mod external;
pub mod guards;
pub mod sql;

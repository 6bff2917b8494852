//! Analyses shared by several rules, built on the function model.

pub mod awaits;
pub mod cache;

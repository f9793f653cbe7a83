//! The Ghostworks load benchmark: a deterministic multi-tenant dataset loaded with COPY
//! ([`dataset`]), an HTTP load harness with HDR histograms ([`load`]), its outputs
//! ([`output`]), and the one-command report with the SQL ceiling ([`report`], [`ceiling`]).
//! docs/performance.md describes the method and holds the figures.

pub mod ceiling;
pub mod dataset;
pub mod load;
pub mod output;
pub mod report;
pub mod stats;

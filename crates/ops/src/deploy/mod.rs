//! Blue/green deploys behind nginx, gated step by step, with automatic rollback and a release
//! history.
//!
//! Steps: check the release and its configuration, back up, migrate, start the new colour,
//! wait for every new instance's readiness, switch nginx's upstream and reload it, bake while
//! watching the new colour's golden signals, then drain and stop the old colour. A failure
//! before the switch stops the new colour; a failure during the bake switches traffic back
//! first. Either way the deploy exits non-zero naming the step, and the history records why.
//!
//! - [`component`]: the colours and the components each runs;
//! - [`history`]: the state directory (history, active colour);
//! - [`policy`]: when contract migrations and rollbacks are allowed;
//! - [`orchestrate`]: the gated steps;
//! - [`analysis`]: a canary step's verdict, the canary against the stable colour;
//! - [`runtime`]: how releases run (processes, Docker Compose), and switching: [`nginx`]
//!   (rewrite and reload) or [`haproxy`] (weights through its runtime API, no reload).

pub mod analysis;
pub mod component;
mod exec;
pub mod haproxy;
pub mod history;
pub mod nginx;
pub mod orchestrate;
pub mod policy;
pub mod runtime;

pub use component::{Colour, Component, Instance, COMPONENTS};
pub use history::{Active, HistoryEntry, Outcome, Release, Rollout, State, Step};
pub use orchestrate::{deploy, Canary, Gates, Inconclusive, Plan, Strategy};
pub use runtime::{Runtime, RuntimeArgs, RuntimeKind};

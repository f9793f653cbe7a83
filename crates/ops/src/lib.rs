//! Operations an operator runs against a Ghostworks database: migration lint and locked
//! migrations, logical backups with manifests, verified restores, per-tenant export and
//! import, and gated blue/green deploys with rollback. The `ghostworks` binary wires each into
//! a subcommand.

pub mod backup;
pub mod cli;
pub mod deploy;
pub mod lint;
pub mod migrate;
pub mod pg;
pub mod pitr;
pub mod private;
pub mod progress;
pub mod storage;
pub mod tenant;

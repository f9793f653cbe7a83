//! The process's own environment: the one place Ghostworks reads it.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::reader::Reader;

/// Every variable, for a configuration built on top of the environment (`ghostworks dev` adds
/// its development defaults before reading each role's).
pub fn process_vars() -> HashMap<String, String> {
    std::env::vars().collect()
}

/// The directories of PATH, in order, where the operator's commands find client tools.
pub fn search_path() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// Who runs an operator's command: the login behind sudo, else the user (SUDO_USER, USER,
/// LOGNAME); `None` when none is set, as under cron or in a container.
pub fn invoking_user() -> Option<String> {
    let vars = process_vars();
    let r = Reader::new(&vars);
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| r.raw(v))
}

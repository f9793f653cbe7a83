//! Env files (`KEY=VALUE` lines), read one way wherever Ghostworks takes one: `config check
//! --env-file` and the per-role files a deploy starts each role with.

use std::collections::HashMap;
use std::path::Path;

use crate::ConfigErrors;

/// The variables of the env file at `path`.
pub fn read_env_file(path: &Path) -> Result<HashMap<String, String>, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![format!(
            "--env-file: cannot read {} ({e})",
            path.display()
        )])
    })?;
    Ok(parse_env_file(&text))
}

/// Parses the `KEY=VALUE` lines of an env file: blank lines and `#` comments are skipped, an
/// `export ` prefix is allowed, and a value in matching single or double quotes loses them,
/// as a shell would read the file.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse() {
        let m = parse_env_file("# c\nA=1\nexport B=\"two words\"\n\nC='x'\n");
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x");
    }
}

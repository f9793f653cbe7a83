//! The web application's configuration (`ghostworks web`). It holds no secret: the browser's
//! session is the API's own tokens, so the web role needs no key of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::reader::Reader;
use crate::{Common, ConfigErrors, TrustedProxies};

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub common: Common,
    pub bind: SocketAddr,
    /// The API every page talks to, without a trailing slash.
    pub api_url: String,
    /// The worker's `/health` and `/metrics` base, for the tour page; optional.
    pub worker_url: Option<String>,
    /// Where browsers reach this app (the base of e-mail links), without a trailing slash.
    pub public_url: String,
    pub cookie_secure: bool,
    /// The proxies in front of this app (nginx) whose `X-Forwarded-For` names the browser;
    /// the browser's address is what the API's per-client limits count.
    pub trusted_proxies: TrustedProxies,
    /// The deploy's state directory (`DEPLOY_STATE_DIR`), whose `rollout.json` the operations
    /// page shows; optional.
    pub deploy_state_dir: Option<PathBuf>,
}

/// PUBLIC_URL: https in production, http allowed elsewhere.
fn check_public_url(r: &mut Reader<'_>, value: &str, production: bool) {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && !production) => {}
        Ok(u) if u.scheme() == "http" => {
            r.error("PUBLIC_URL: must be an https:// URL in production")
        }
        _ => r.error(format!(
            "PUBLIC_URL: '{value}' must be an http(s) URL such as https://app.example.com"
        )),
    }
}

/// API_URL and WORKER_URL: services on the internal network, reached over plain HTTP (TLS
/// ends at the proxy in front of the web app).
fn internal_url(r: &mut Reader<'_>, name: &str, value: &str) {
    if !url::Url::parse(value).is_ok_and(|u| u.scheme() == "http" && u.host().is_some()) {
        r.error(format!(
            "{name}: '{value}' must be an http:// URL on the internal network, such as http://api:8000"
        ));
    }
}

crate::env_sources!(WebConfig);

impl WebConfig {
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(vars);
        let common = Common::read(&mut r);
        let (development, production) = (common.development(), common.production());
        crate::common::no_owner_login(&mut r, common.environment);
        let default_bind = if development {
            SocketAddr::from(([127, 0, 0, 1], 3000))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 3000))
        };
        let bind = r.parse("WEB_BIND", default_bind, "an address such as 0.0.0.0:3000");
        let api_url = match r.raw("API_URL") {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if development => "http://127.0.0.1:8000".into(),
            None => {
                r.error("API_URL: missing; set the address of the API, e.g. http://api:8000");
                String::new()
            }
        };
        if !api_url.is_empty() {
            internal_url(&mut r, "API_URL", &api_url);
        }
        let worker_url = r
            .raw("WORKER_URL")
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(u) = worker_url.clone() {
            internal_url(&mut r, "WORKER_URL", &u);
        }
        let public_url = match r.raw("PUBLIC_URL") {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if development => format!("http://{bind}"),
            None => {
                r.error("PUBLIC_URL: missing; set the address browsers use for this app, e.g. https://app.example.com");
                String::new()
            }
        };
        if !public_url.is_empty() {
            check_public_url(&mut r, &public_url, production);
        }
        let cookie_secure = r.bool("COOKIE_SECURE", true);
        if production && !cookie_secure {
            r.error("COOKIE_SECURE: must be true in production (session cookies only over HTTPS)");
        }
        let trusted_proxies = r.trusted_proxies();
        let deploy_state_dir = r.raw("DEPLOY_STATE_DIR").map(PathBuf::from);
        r.finish(|| WebConfig {
            common,
            bind,
            api_url,
            worker_url,
            public_url,
            cookie_secure,
            trusted_proxies,
            deploy_state_dir,
        })
    }

    /// The effective configuration as `NAME=value` lines (nothing here is secret).
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        let mut lines = self.common.redacted_head();
        lines.extend([
            ("WEB_BIND", self.bind.to_string()),
            ("API_URL", self.api_url.clone()),
            ("WORKER_URL", self.worker_url.clone().unwrap_or_default()),
            (
                "DEPLOY_STATE_DIR",
                self.deploy_state_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
            ),
            ("PUBLIC_URL", self.public_url.clone()),
            ("COOKIE_SECURE", self.cookie_secure.to_string()),
            ("TRUSTED_PROXIES", self.trusted_proxies.to_string()),
        ]);
        lines.extend(self.common.redacted_tail());
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::vars;

    const DEVELOPMENT: (&str, &str) = ("GHOSTWORKS_ENV", "development");

    #[test]
    fn development_defaults_point_at_the_local_api() {
        let c = WebConfig::from_vars(&vars(&[DEVELOPMENT])).unwrap();
        assert_eq!(c.api_url, "http://127.0.0.1:8000");
        assert_eq!(c.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(c.public_url, "http://127.0.0.1:3000");
        assert!(c.cookie_secure);
    }

    #[test]
    fn production_names_every_problem() {
        let e = WebConfig::from_vars(&vars(&[
            ("GHOSTWORKS_ENV", "production"),
            ("COOKIE_SECURE", "false"),
            ("PUBLIC_URL", "http://app.example.com"),
        ]))
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("API_URL: missing"), "{text}");
        assert!(text.contains("COOKIE_SECURE"), "{text}");
        assert!(text.contains("PUBLIC_URL: must be an https://"), "{text}");
    }

    #[test]
    fn the_api_is_reached_over_plain_http_inside_the_network() {
        let e = WebConfig::from_vars(&vars(&[
            DEVELOPMENT,
            ("API_URL", "https://api.example.com"),
        ]))
        .unwrap_err();
        assert!(e
            .to_string()
            .contains("API_URL: 'https://api.example.com' must be an http:// URL"));
        let c = WebConfig::from_vars(&vars(&[
            ("GHOSTWORKS_ENV", "production"),
            ("API_URL", "http://api:8000/"),
            ("PUBLIC_URL", "https://app.example.com"),
        ]))
        .unwrap();
        assert_eq!(c.api_url, "http://api:8000");
        assert_eq!(c.bind.to_string(), "0.0.0.0:3000");
    }

    #[test]
    fn trusted_proxies_are_read_like_the_apis() {
        let c = WebConfig::from_vars(&vars(&[DEVELOPMENT])).unwrap();
        assert_eq!(c.trusted_proxies, TrustedProxies::default());
        let c = WebConfig::from_vars(&vars(&[
            DEVELOPMENT,
            ("TRUSTED_PROXIES", "172.28.0.10, 10.1.0.0/16"),
        ]))
        .unwrap();
        let nginx = "172.28.0.10".parse().unwrap();
        assert!(c.trusted_proxies.contains(&nginx));
        assert!(c
            .redacted()
            .contains(&("TRUSTED_PROXIES", "172.28.0.10/32,10.1.0.0/16".to_string())));
        let e =
            WebConfig::from_vars(&vars(&[DEVELOPMENT, ("TRUSTED_PROXIES", "nginx")])).unwrap_err();
        assert!(
            e.to_string()
                .contains("TRUSTED_PROXIES: 'nginx' is not an IP address or CIDR range"),
            "{e}"
        );
    }
}

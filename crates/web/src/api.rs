//! The HTTP client for the API: the one source of truth. Every call returns the decoded body
//! or an [`ApiFailure`] carrying the API's status, code, message and per-field messages.

use std::collections::BTreeMap;
use std::time::Duration;

use ghostworks_domain::Role;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A refusal (or an outage) as the pages show it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Field name (the last element of the API's `loc`) to its message.
    pub fields: BTreeMap<String, String>,
    /// `Retry-After` seconds on 429.
    pub retry_after: Option<u64>,
}

impl ApiFailure {
    pub fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "service_unavailable".into(),
            message: "The service is unreachable right now; try again in a moment.".into(),
            fields: BTreeMap::new(),
            retry_after: None,
        }
    }

    pub fn is(&self, status: StatusCode) -> bool {
        self.status == status
    }

    /// The message for `field`, if the API named it.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// The message for the form as a whole: the API's message unless every problem is shown
    /// next to a field.
    pub fn summary(&self) -> String {
        if self.fields.is_empty() {
            match self.retry_after {
                Some(s) => format!("{} (try again in {s} s)", self.message),
                None => self.message.clone(),
            }
        } else {
            "Please correct the highlighted fields.".into()
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: Value,
}

async fn refusal(resp: reqwest::Response) -> ApiFailure {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Option<ErrorBody> = resp.json().await.ok();
    let mut fields = BTreeMap::new();
    let (code, message) = match body {
        Some(b) => {
            if let Value::Array(items) = &b.detail {
                for item in items {
                    let name = item["loc"]
                        .as_array()
                        .and_then(|l| l.last())
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let msg = item["msg"].as_str().unwrap_or_default();
                    fields
                        .entry(name.to_string())
                        .or_insert_with(|| msg.to_string());
                }
            }
            // The API prefixes 422 messages; the field messages say the same thing better.
            let message = b
                .message
                .strip_prefix("Invalid input: ")
                .unwrap_or(&b.message)
                .to_string();
            (b.error, message)
        }
        None => (
            "unexpected".into(),
            format!("The service answered {status}; try again."),
        ),
    };
    ApiFailure {
        status,
        code,
        message,
        fields,
        retry_after,
    }
}

/// The access and refresh tokens the API issues on login and refresh.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    pub id: uuid::Uuid,
    pub email: String,
    pub full_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Workspace {
    pub id: uuid::Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub member_count: i64,
    pub user_role: Option<Role>,
}

impl Workspace {
    /// Owners and admins manage members and settings (the API enforces it; the pages only
    /// hide what would be refused).
    pub fn can_manage(&self) -> bool {
        self.user_role.is_some_and(|r| r.at_least(Role::Admin))
    }

    pub fn is_owner(&self) -> bool {
        self.user_role == Some(Role::Owner)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub user_id: uuid::Uuid,
    pub user_email: String,
    pub user_name: String,
    pub role: Role,
    pub joined_at: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Artifact {
    pub id: uuid::Uuid,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub artifact_metadata: serde_json::Map<String, Value>,
    pub version: i32,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Page {
    pub items: Vec<Artifact>,
    /// Exact when `total_exact`, else a lower bound (a broad filter in a large workspace).
    pub total: i64,
    pub total_exact: bool,
    pub has_more: bool,
    /// Where the next page starts (keyset paging: its cost does not grow with depth).
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TagCount {
    pub tag: String,
    pub count: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ArtifactStats {
    pub most_used_tags: Vec<TagCount>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SystemStats {
    pub users: i64,
    pub workspaces: i64,
    pub artifacts: i64,
    pub active_artifacts: i64,
}

/// A reqwest client bound to the API's base URL.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// One call: method, path, optional bearer token and JSON body, extra headers.
pub struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub token: Option<&'a str>,
    pub body: Option<Value>,
    pub query: Vec<(String, String)>,
    pub client_ip: Option<String>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            token: None,
            body: None,
            query: Vec::new(),
            client_ip: None,
        }
    }

    pub fn token(mut self, t: Option<&'a str>) -> Self {
        self.token = t;
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn query(mut self, q: Vec<(String, String)>) -> Self {
        self.query = q;
        self
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        let http = ghostworks_telemetry::http_client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(64)
            .build()
            .expect("a reqwest client with default TLS-less settings");
        Self {
            http,
            base: base.to_string(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `call`; a 2xx body decodes into `T` (use `Value` to ignore it).
    pub async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ApiFailure> {
        let mut req = self
            .http
            .request(call.method, format!("{}{}", self.base, call.path));
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(t) = call.token {
            req = req.bearer_auth(t);
        }
        if let Some(ip) = call.client_ip {
            req = req.header("x-forwarded-for", ip);
        }
        if let Some(b) = call.body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            tracing::warn!(error = %e, "API unreachable");
            ApiFailure::unavailable()
        })?;
        if !resp.status().is_success() {
            return Err(refusal(resp).await);
        }
        if resp.status() == StatusCode::NO_CONTENT {
            return serde_json::from_value(Value::Null).map_err(|_| ApiFailure::unavailable());
        }
        resp.json().await.map_err(|e| {
            tracing::warn!(error = %e, "API answered an unexpected body");
            ApiFailure::unavailable()
        })
    }

    /// A plain GET returning status and text (health checks, metrics).
    pub async fn get_text(&self, url: &str) -> Result<(StatusCode, String), ApiFailure> {
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|_| ApiFailure::unavailable())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|_| ApiFailure::unavailable())?;
        Ok((status, text))
    }
}

//! The answers a fault drill's load got: which writes were acknowledged, how many requests
//! were refused as the API refuses them during an outage, and every other answer.

use serde_json::Value;

/// Acknowledged writes, JSON 503s, and every answer that was neither a 2xx nor the JSON 503.
#[derive(Default)]
pub struct Tally {
    pub answered: u32,
    pub acknowledged: Vec<String>,
    pub unavailable: u32,
    pub wrong: Vec<String>,
}

impl Tally {
    /// Checks one answer; returns its body when it was a 2xx. A 503 counts as expected only
    /// with `Retry-After` and the JSON error body: an unavailable dependency
    /// (`service_unavailable`) or load shed to protect the rest (`searches_busy`, ...).
    pub async fn record(
        &mut self,
        what: &str,
        r: reqwest::Result<reqwest::Response>,
    ) -> Option<Value> {
        self.answered += 1;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                self.wrong.push(format!("{what}: no answer: {e}"));
                return None;
            }
        };
        let status = r.status().as_u16();
        let retry_after = r.headers().contains_key("retry-after");
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match status {
            200..=299 => return Some(body),
            503 if retry_after && body["error"].is_string() && body["request_id"].is_string() => {
                self.unavailable += 1
            }
            _ => self.wrong.push(format!("{what}: {status} {body}")),
        }
        None
    }

    /// Adds another client's tally to this one.
    pub fn add(&mut self, mut other: Tally) {
        self.answered += other.answered;
        self.acknowledged.append(&mut other.acknowledged);
        self.unavailable += other.unavailable;
        self.wrong.append(&mut other.wrong);
    }
}

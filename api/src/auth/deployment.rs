//! A Taskcluster deployment as the identity provider (`TOOLTOOL_TASKCLUSTER_ROOT_URL`): a Hawk
//! request whose clientId is not registered here is handed, header and all, to the
//! deployment's `POST <root>/api/auth/v1/authenticate-hawk`, as the original service did, and
//! the scopes it answers become the caller's.
//!
//! One HTTP client with connection reuse; every call is bounded by
//! `TOOLTOOL_TASKCLUSTER_TIMEOUT`. No answer in time, or an answer that is not one of
//! Taskcluster's documented shapes, is [`DeploymentError`]: the request is 503
//! `identity-unavailable`, never anonymous.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// What the deployment is asked about one request (its documented request body).
#[derive(Debug, Serialize)]
pub struct HawkQuestion<'a> {
    /// The request method, lowercase.
    pub method: String,
    /// Path and query, exactly as sent.
    pub resource: &'a str,
    /// The host under the MAC.
    pub host: &'a str,
    /// The port under the MAC.
    pub port: u16,
    /// The whole `Authorization` header.
    pub authorization: &'a str,
}

/// The deployment's verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `auth-success`.
    Success {
        /// The credential's clientId.
        client_id: String,
        /// Its scopes, expanded.
        scopes: Vec<String>,
        /// The payload hash the header carried, which the body must match.
        hash: Option<String>,
    },
    /// `auth-failed`, with the deployment's message.
    Failed(String),
}

/// The deployment did not answer in time, or not in a shape it documents.
#[derive(Debug, thiserror::Error)]
#[error("the Taskcluster deployment did not answer: {0}")]
pub struct DeploymentError(String);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    client_id: Option<String>,
    scopes: Option<Vec<String>>,
    hash: Option<String>,
    message: Option<String>,
}

/// The client of one deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    http: reqwest::Client,
    url: String,
    metrics: std::sync::Arc<Metrics>,
}

impl Deployment {
    /// A client of the deployment at `root_url`, each call bounded by `timeout` and counted in
    /// `metrics`.
    pub fn new(root_url: &str, timeout: Duration, metrics: std::sync::Arc<Metrics>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // A redirect would turn the POST into a GET somewhere else: an error instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tooltool-api/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, url: format!("{root_url}/api/auth/v1/authenticate-hawk"), metrics })
    }

    /// Asks the deployment about one request.
    pub async fn authenticate(&self, question: &HawkQuestion<'_>) -> Result<Verdict, DeploymentError> {
        let started = Instant::now();
        let verdict = self.ask(question).await;
        self.metrics.identity_latency.observe(started.elapsed().as_secs_f64());
        let outcome = match &verdict {
            Ok(Verdict::Success { .. }) => "success",
            Ok(Verdict::Failed(_)) => "failed",
            Err(_) => "unavailable",
        };
        self.metrics.identity_calls.with_label_values(&[outcome]).inc();
        verdict
    }

    async fn ask(&self, question: &HawkQuestion<'_>) -> Result<Verdict, DeploymentError> {
        let unavailable = |e: &dyn std::fmt::Display| DeploymentError(e.to_string());
        let res = self.http.post(&self.url).json(question).send().await.map_err(|e| unavailable(&e))?;
        if !res.status().is_success() {
            return Err(DeploymentError(format!("authenticate-hawk answered {}", res.status())));
        }
        let answer: Answer = res.json().await.map_err(|e| unavailable(&e))?;
        match (answer.status.as_str(), answer.client_id, answer.scopes) {
            ("auth-success", Some(client_id), Some(scopes)) => {
                Ok(Verdict::Success { client_id, scopes, hash: answer.hash })
            }
            ("auth-failed", ..) => Ok(Verdict::Failed(answer.message.unwrap_or_default())),
            (status, ..) => Err(DeploymentError(format!("authenticate-hawk answered status {status:?}"))),
        }
    }
}

//! The HTTP client the benchmarks talk to kedai with: plain HTTP/1.1 over
//! hyper, which the server already links, so the binary carries one HTTP
//! stack rather than a second client library for benchmarks alone. It
//! never reads proxy settings from the environment: a proxy would be
//! measured along with kedai.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Request(String),
}

/// An answer: its status and whole body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }
}

/// A request to send: method, URL, optional bearer token and JSON body.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    method: Method,
    url: String,
    authorization: Option<HeaderValue>,
    body: Option<Bytes>,
    timeout: Option<Duration>,
}

impl Call {
    pub fn new(method: Method, url: impl Into<String>) -> Call {
        Call {
            method,
            url: url.into(),
            authorization: None,
            body: None,
            timeout: None,
        }
    }

    pub fn get(url: impl Into<String>) -> Call {
        Call::new(Method::GET, url)
    }

    pub fn bearer(mut self, token: &str) -> Call {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        value.set_sensitive(true);
        self.authorization = Some(value);
        self
    }

    /// A body that is JSON already.
    pub fn json_bytes(mut self, body: impl Into<Bytes>) -> Call {
        self.body = Some(body.into());
        self
    }

    pub fn json(self, body: &serde_json::Value) -> Call {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.json_bytes(bytes)
    }

    /// A deadline for this call alone, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }
}

#[derive(Clone)]
pub(crate) struct BenchClient {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl BenchClient {
    /// A client whose calls give up after `timeout`.
    pub fn new(timeout: Duration) -> BenchClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        BenchClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    pub async fn send(&self, call: Call) -> Result<Reply, ClientError> {
        let mut request = Request::builder().method(call.method).uri(&call.url);
        if let Some(authorization) = call.authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        if call.body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(call.body.unwrap_or_default()))
            .map_err(|e| ClientError::Request(format!("{}: {e}", call.url)))?;
        let timeout = call.timeout.unwrap_or(self.timeout);
        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| {
                if err.is_connect() {
                    ClientError::Connect(err.to_string())
                } else {
                    ClientError::Transport(err.to_string())
                }
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            Ok(Reply { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }
}

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

/// An answer: its status, headers and whole body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
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
    cookie: Option<HeaderValue>,
    body: Option<(Bytes, &'static str)>,
    timeout: Option<Duration>,
}

impl Call {
    pub fn new(method: Method, url: impl Into<String>) -> Call {
        Call {
            method,
            url: url.into(),
            authorization: None,
            cookie: None,
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

    pub fn cookie(mut self, cookie: &str) -> Call {
        self.cookie = HeaderValue::from_str(cookie).ok();
        self
    }

    /// A body that is JSON already.
    pub fn json_bytes(mut self, body: impl Into<Bytes>) -> Call {
        self.body = Some((body.into(), "application/json"));
        self
    }

    /// An HTML form's fields, URL-encoded.
    pub fn form(mut self, fields: &[(&str, &str)]) -> Call {
        let encoded = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.body = Some((encoded.into(), "application/x-www-form-urlencoded"));
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

/// `application/x-www-form-urlencoded` for one key or value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
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
        if let Some(cookie) = call.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let body = match call.body {
            Some((body, content_type)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                body
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
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
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }
}

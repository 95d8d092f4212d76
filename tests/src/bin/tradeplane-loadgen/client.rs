//! One HTTP/1.1 keep-alive connection per simulated client, to loopback addresses only.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Where requests go: one loopback socket address and the `Host` header to send.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    host: String,
}

/// Resolves `http://host:port[/]` and refuses anything that is not a loopback address.
pub async fn resolve(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only plain http:// URLs are supported"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "{url:?}: give the base URL only, e.g. http://127.0.0.1:8080"
        ));
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_owned()
    };
    let addrs = tokio::net::lookup_host(with_port.as_str())
        .await
        .map_err(|e| format!("{url:?}: cannot resolve: {e}"))?;
    let addr = addrs
        .into_iter()
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| format!("{url:?}: refusing to send load to a non-loopback address"))?;
    Ok(Target {
        addr,
        host: authority.to_owned(),
    })
}

/// Why a request produced no HTTP response.
#[derive(Debug)]
pub enum ClientError {
    Connect(std::io::Error),
    Http(hyper::Error),
    Build(hyper::http::Error),
    Timeout,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "connect: {e}"),
            ClientError::Http(e) => write!(f, "http: {e}"),
            ClientError::Build(e) => write!(f, "request: {e}"),
            ClientError::Timeout => write!(f, "timed out"),
        }
    }
}

/// One HTTP/1.1 keep-alive connection, reopened after any transport error.
///
/// hyper's low-level `conn::http1` client is used rather than a pooled client so that a level
/// of concurrency C is exactly C connections with one request in flight on each.
pub struct Conn {
    target: Target,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(target: Target, timeout: Duration) -> Conn {
        Conn {
            target,
            timeout,
            sender: None,
        }
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(ClientError::Connect)?;
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends one request and reads the whole answer: `(status, body)`.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes), ClientError> {
        let result = tokio::time::timeout(self.timeout, self.call_inner(method, path, token, body))
            .await
            .unwrap_or(Err(ClientError::Timeout));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn call_inner(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes), ClientError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.target.host.as_str());
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let bytes = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(bytes)).map_err(ClientError::Build)?;
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.open().await?,
        };
        sender.ready().await.map_err(ClientError::Http)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(ClientError::Http)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Http)?
            .to_bytes();
        self.sender = Some(sender);
        Ok((status, body))
    }

    /// A setup call that must succeed with `expect`; returns the JSON body.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        expect: u16,
    ) -> Result<Value, String> {
        let (status, bytes) = self
            .call(method.clone(), path, token, body)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if status != expect {
            return Err(format!(
                "{method} {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{method} {path}: bad JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn refuses_non_loopback() {
        assert!(resolve("http://127.0.0.1:8080").await.is_ok());
        assert!(resolve("http://[::1]:8080/").await.is_ok());
        assert!(resolve("http://192.0.2.1:8080").await.is_err());
        assert!(resolve("https://127.0.0.1:8080").await.is_err());
        assert!(resolve("http://127.0.0.1:8080/api").await.is_err());
    }
}

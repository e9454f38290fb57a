//! A minimal HTTP/1.1 client over one keep-alive `TcpStream`: enough to POST
//! remote-write bodies and GET readiness and query endpoints on loopback.
//!
//! Written by hand rather than pulling hyper into the workspace: the benchmark
//! needs one request at a time per connection, `Content-Length` and chunked
//! response bodies, and nothing else (no TLS, no redirects, no pipelining).

use crate::error::{BenchError, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted (status line plus headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body kept (bigger bodies are an error: we only expect short answers).
const MAX_BODY: usize = 64 << 20;

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`, used both to connect and as the `Host` header.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://host:port[/path]`; only plain HTTP is supported.
    pub fn parse(url: &str) -> Result<Url> {
        let bad = |why| BenchError::InvalidUrl {
            url: url.to_string(),
            why,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || !authority.contains(':') {
            return Err(bad("the authority must be host:port"));
        }
        Ok(Url {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> Url {
        Url {
            authority: self.authority.clone(),
            path: path.to_string(),
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// One keep-alive connection to one server.
pub struct Conn {
    stream: TcpStream,
    authority: String,
    buf: Vec<u8>,
    /// Set when the server asked to close (`Connection: close`) or the stream broke.
    broken: bool,
}

/// How the body of a response is delimited.
enum Framing {
    Length(usize),
    Chunked,
    None,
}

impl Conn {
    /// Connects to `authority` (`host:port`).
    pub async fn connect(authority: &str) -> Result<Conn> {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|source| BenchError::Io {
                what: "connecting to",
                addr: authority.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            authority: authority.to_string(),
            buf: Vec::with_capacity(4096),
            broken: false,
        })
    }

    /// Whether the connection must be replaced before the next request.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends one request and reads its response, within `timeout`.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Response> {
        match tokio::time::timeout(timeout, self.request_inner(method, path, headers, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.broken = true;
                Err(e)
            }
            Err(_) => {
                self.broken = true;
                Err(BenchError::Timeout {
                    addr: self.authority.clone(),
                    secs: timeout.as_secs(),
                })
            }
        }
    }

    async fn request_inner(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.authority,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let io = |source| BenchError::Io {
            what: "writing to",
            addr: self.authority.clone(),
            source,
        };
        self.stream.write_all(head.as_bytes()).await.map_err(io)?;
        if !body.is_empty() {
            let io = |source| BenchError::Io {
                what: "writing to",
                addr: self.authority.clone(),
                source,
            };
            self.stream.write_all(body).await.map_err(io)?;
        }
        self.read_response(method == "HEAD").await
    }

    /// Reads more bytes into the buffer; EOF is an error (the response is incomplete).
    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|source| BenchError::Io {
                what: "reading from",
                addr: self.authority.clone(),
                source,
            })?;
        if n == 0 {
            return Err(BenchError::Closed {
                addr: self.authority.clone(),
            });
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn bad(&self, why: impl Into<String>) -> BenchError {
        BenchError::BadResponse {
            addr: self.authority.clone(),
            why: why.into(),
        }
    }

    async fn read_response(&mut self, head_only: bool) -> Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(self.bad(format!("response head longer than {MAX_HEAD} bytes")));
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let (status, framing, close) = parse_head(&head).map_err(|why| self.bad(why))?;
        if close {
            self.broken = true;
        }
        let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
        let body = match framing {
            _ if no_body => Vec::new(),
            Framing::Length(n) => self.read_exact_body(n).await?,
            Framing::Chunked => self.read_chunked().await?,
            Framing::None => {
                // Body delimited by close: read to EOF.
                self.broken = true;
                while self.fill().await.is_ok() {
                    if self.buf.len() > MAX_BODY {
                        return Err(self.bad("body too large"));
                    }
                }
                std::mem::take(&mut self.buf)
            }
        };
        Ok(Response { status, body })
    }

    async fn read_exact_body(&mut self, n: usize) -> Result<Vec<u8>> {
        if n > MAX_BODY {
            return Err(self.bad(format!(
                "Content-Length {n} is over the {MAX_BODY}-byte limit"
            )));
        }
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn read_line(&mut self) -> Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(self.bad("chunk header line too long"));
            }
            self.fill().await?;
        }
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| self.bad(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, then an empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(self.bad("chunked body too large"));
            }
            body.extend(self.read_exact_body(size).await?);
            if !self.read_line().await?.is_empty() {
                return Err(self.bad("chunk not followed by CRLF"));
            }
        }
    }
}

/// Status, body framing and whether the server will close, from a response head.
fn parse_head(head: &str) -> std::result::Result<(u16, Framing, bool), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut framing = Framing::None;
    let mut close = version == "HTTP/1.0";
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            framing = Framing::Length(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok((status, framing, close))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One GET on a fresh connection (readiness probes, queries).
pub async fn get(url: &Url, timeout: Duration) -> Result<Response> {
    let mut conn = tokio::time::timeout(timeout, Conn::connect(&url.authority))
        .await
        .map_err(|_| BenchError::Timeout {
            addr: url.authority.clone(),
            secs: timeout.as_secs(),
        })??;
    conn.request("GET", &url.path, &[("Connection", "close")], &[], timeout)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:9009/api/v1/write").expect("valid");
        assert_eq!(u.authority, "127.0.0.1:9009");
        assert_eq!(u.path, "/api/v1/write");
        assert_eq!(Url::parse("http://h:1").expect("valid").path, "/");
        assert!(Url::parse("https://h:1/").is_err());
        assert!(Url::parse("http://nohostport/").is_err());
    }

    /// Serves canned responses, one per request, on one connection.
    async fn canned(responses: Vec<&'static [u8]>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            for r in responses {
                let _ = s.read(&mut buf).await;
                s.write_all(r).await.expect("write");
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_length_chunked_and_no_content_bodies_on_one_connection() {
        let addr = canned(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ])
        .await;
        let mut c = Conn::connect(&addr).await.expect("connect");
        let t = Duration::from_secs(5);
        let r = c.request("POST", "/a", &[], b"x", t).await.expect("first");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = c.request("POST", "/a", &[], b"x", t).await.expect("second");
        assert_eq!((r.status, r.body.as_slice()), (400, &b"abcde"[..]));
        let r = c.request("POST", "/a", &[], b"x", t).await.expect("third");
        assert_eq!((r.status, r.body.len()), (204, 0));
        assert!(!c.is_broken());
    }

    #[tokio::test]
    async fn connection_close_marks_the_connection_broken() {
        let addr = canned(vec![
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        let mut c = Conn::connect(&addr).await.expect("connect");
        let r = c
            .request("GET", "/", &[], &[], Duration::from_secs(5))
            .await
            .expect("response");
        assert_eq!(r.status, 200);
        assert!(c.is_broken());
    }
}

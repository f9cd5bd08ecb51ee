//! A minimal blocking HTTP/1.1 client and message reader: enough for the helpers to
//! query osmem and for the fault proxy to relay requests, without pulling an async
//! runtime into every test. Bodies are read by `Content-Length` or chunked coding.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An HTTP request as read from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target (`/_bulk?refresh=true`).
    pub target: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked (still compressed if it was sent compressed).
    pub body: Vec<u8>,
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads one line without its CRLF; `None` at a clean end of stream.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(Some(line))
}

fn read_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| invalid("connection closed inside the headers"))?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("malformed header line `{line}`")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// Reads a body framed by `headers`; without framing, reads to the end of the stream
/// when `to_eof` (a response), or takes it as empty (a request).
fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
) -> io::Result<Vec<u8>> {
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let size_line = read_line(r)?.ok_or_else(|| invalid("connection closed in a chunk"))?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| invalid(format!("bad chunk size `{size_line}`")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line(r)?.unwrap_or_default().is_empty() {}
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?;
        }
    }
    if let Some(len) = header(headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length `{len}`")))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// Reads one request; `None` when the client closed the connection between requests.
pub fn read_request(r: &mut impl BufRead) -> io::Result<Option<Request>> {
    let line = loop {
        match read_line(r)? {
            None => return Ok(None),
            // Tolerate stray CRLFs between requests (RFC 9112 section 2.2).
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("malformed request line `{line}`")));
    };
    let headers = read_headers(r)?;
    let body = read_body(r, &headers, false)?;
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body,
    }))
}

/// Reads one response to a request made with `method`.
pub fn read_response(r: &mut impl BufRead, method: &str) -> io::Result<Response> {
    let line = read_line(r)?.ok_or_else(|| invalid("connection closed before a response"))?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("malformed status line `{line}`")))?;
    let headers = read_headers(r)?;
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(r, &headers, true)?
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Writes a response with a `Content-Length`; framing headers in `headers` are
/// replaced.
pub fn write_response(w: &mut impl Write, response: &Response, keep_alive: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (k, v) in &response.headers {
        if is_framing(k) {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    out.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    w.write_all(out.as_bytes())?;
    w.write_all(&response.body)?;
    w.flush()
}

fn is_framing(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Splits `http://host:port[/prefix]` into the address and the path prefix.
fn split_url(base: &str) -> io::Result<(String, String)> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| invalid(format!("`{base}` is not an http:// URL")))?;
    match rest.split_once('/') {
        Some((addr, prefix)) => Ok((
            addr.to_string(),
            format!("/{}", prefix.trim_end_matches('/')),
        )),
        None => Ok((rest.to_string(), String::new())),
    }
}

/// Sends one request to `base` (`http://127.0.0.1:PORT`) on a new connection and
/// reads the response. `headers` are added to `Host`, `Content-Length` and
/// `Connection: close`.
pub fn send(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<Response> {
    let (addr, prefix) = split_url(base)?;
    let stream = TcpStream::connect(&addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {prefix}{path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        if is_framing(k) || k.eq_ignore_ascii_case("host") {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut w = &stream;
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()?;
    read_response(&mut BufReader::new(&stream), method)
}

/// `send` with a JSON body (or none) and a JSON content type.
pub fn send_json(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> io::Result<Response> {
    let headers = [("Content-Type".to_string(), "application/json".to_string())];
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    send(base, method, path, &headers, body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunked_and_sized_messages() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let resp = read_response(&mut &raw[..], "GET").unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"abcde"[..]));

        let raw = b"POST /_bulk HTTP/1.1\r\nContent-Length: 4\r\nHost: x\r\n\r\nbodyGET / HTTP/1.1\r\n\r\n";
        let mut r = &raw[..];
        let req = read_request(&mut r).unwrap().unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, "/_bulk");
        assert_eq!(req.body, b"body");
        assert_eq!(header(&req.headers, "HOST"), Some("x"));
        let req = read_request(&mut r).unwrap().unwrap();
        assert_eq!((req.method.as_str(), req.body.len()), ("GET", 0));
        assert_eq!(read_request(&mut r).unwrap(), None);
    }

    #[test]
    fn writes_a_sized_response() {
        let mut out = Vec::new();
        let resp = Response {
            status: 429,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Transfer-Encoding".into(), "chunked".into()),
            ],
            body: b"{}".to_vec(),
        };
        write_response(&mut out, &resp, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
        );
    }
}

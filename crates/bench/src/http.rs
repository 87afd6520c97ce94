//! The load driver's HTTP/1.1 client: one keep-alive TCP connection per simulated client,
//! requests written as prepared bytes and answers parsed in place. Nothing in between (no pool,
//! no redirects, no cookies unless a `Browser` adds them), so that one core of driver can
//! outrun one core of server: a general-purpose client (hyper's, even bare) spends several
//! times more CPU per request than this.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where a server listens and what it calls itself.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    /// The `Host` header (`127.0.0.1:PORT`).
    pub(crate) host: String,
    /// The issuer URL, without a trailing slash; its origin is what forms must send as `Origin`.
    pub(crate) issuer: String,
}

impl Endpoint {
    pub(crate) fn new(addr: SocketAddr, issuer: &str) -> Self {
        Self { addr, host: addr.to_string(), issuer: issuer.trim_end_matches('/').to_owned() }
    }

    /// The issuer's origin (`http://127.0.0.1:PORT`), for the `Origin` header of form posts.
    pub(crate) fn origin(&self) -> Result<String> {
        let url = url::Url::parse(&self.issuer).context("the issuer is not a URL")?;
        Ok(url.origin().ascii_serialization())
    }

    /// The path of `path` under the issuer (the issuer may have a path of its own).
    pub(crate) fn path(&self, path: &str) -> Result<String> {
        let url = url::Url::parse(&self.issuer).context("the issuer is not a URL")?;
        Ok(format!("{}{path}", url.path().trim_end_matches('/')))
    }

    /// The path and query of `target` if it is on this server: path-absolute, or an absolute
    /// URL with this server's origin (where a redirect may send a browser next).
    pub(crate) fn path_on_this_server(&self, target: &str) -> Result<String> {
        if target.starts_with('/') {
            return Ok(target.to_owned());
        }
        let url = url::Url::parse(target).with_context(|| format!("not a URL: {target:.200}"))?;
        if url.origin().ascii_serialization() != self.origin()? {
            bail!("{target:.200} is not on this server");
        }
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        })
    }

    /// The bytes of a request to this server: `path` is the path and query (origin form).
    pub(crate) fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (k, v) in headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// A form POST with extra headers.
    pub(crate) fn post_form(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
        let mut all = vec![("Content-Type", FORM)];
        all.extend_from_slice(headers);
        self.request("POST", path, &all, body.as_bytes())
    }
}

pub(crate) const FORM: &str = "application/x-www-form-urlencoded";

/// One answer, read whole.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The header lines, without the status line.
    head: String,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// Every value of the header `name` (case-insensitive).
    pub(crate) fn headers<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.head.split("\r\n").filter_map(move |line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).next()
    }

    pub(crate) fn location(&self) -> Option<&str> {
        self.header("location")
    }

    pub(crate) fn is_redirection(&self) -> bool {
        (300..400).contains(&self.status)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A string member of a flat JSON object answer (see [`json_str_field`]).
    pub(crate) fn json_str(&self, key: &str) -> Option<&str> {
        json_str_field(std::str::from_utf8(&self.body).ok()?, key)
    }
}

/// What [`parse_answer`] found in a buffer.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A whole answer, the bytes it took, and whether the server closes the connection after it.
    Done(Answer, usize, bool),
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one HTTP/1.1 answer from the start of `buf`. `eof`: the server closed the
/// connection, so an answer without a length ends here.
pub(crate) fn parse_answer(buf: &[u8], eof: bool) -> Result<Parsed> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if eof { Err(anyhow!("the connection closed before the answer's header ended")) } else { Ok(Parsed::Incomplete) };
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("an answer header that is not UTF-8")?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("a bad status line: {status_line:.60}"))?;
    let answer = |body: Vec<u8>| Answer { status, head: headers.to_owned(), body };
    let probe = answer(Vec::new());
    let close = probe.headers("connection").any(|v| v.eq_ignore_ascii_case("close"));
    let start = head_end + 4;
    let rest = &buf[start..];
    if (100..200).contains(&status) {
        bail!("an informational answer ({status}) was not expected");
    }
    if status == 204 || status == 304 {
        return Ok(Parsed::Done(answer(Vec::new()), start, close));
    }
    if probe.headers("transfer-encoding").any(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let Some(line_end) = find(&rest[pos..], b"\r\n") else { return incomplete(eof) };
            let size_text = std::str::from_utf8(&rest[pos..pos + line_end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("a bad chunk size: {size_text:.20}"))?;
            pos += line_end + 2;
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                let Some(end) = find(&rest[pos..], b"\r\n") else { return incomplete(eof) };
                let mut p = pos;
                let mut e = end;
                while e != 0 {
                    p += e + 2;
                    let Some(next) = find(&rest[p..], b"\r\n") else { return incomplete(eof) };
                    e = next;
                }
                return Ok(Parsed::Done(answer(body), start + p + 2, close));
            }
            if rest.len() < pos + size + 2 {
                return incomplete(eof);
            }
            body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
    }
    if let Some(len) = probe.header("content-length") {
        let len: usize = len.parse().with_context(|| format!("a bad Content-Length: {len:.20}"))?;
        if rest.len() < len {
            return incomplete(eof);
        }
        return Ok(Parsed::Done(answer(rest[..len].to_vec()), start + len, close));
    }
    // No length: the body runs to the end of the connection.
    if eof {
        Ok(Parsed::Done(answer(rest.to_vec()), buf.len(), true))
    } else {
        Ok(Parsed::Incomplete)
    }
}

fn incomplete(eof: bool) -> Result<Parsed> {
    if eof {
        Err(anyhow!("the connection closed in the middle of an answer"))
    } else {
        Ok(Parsed::Incomplete)
    }
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl Conn {
    pub(crate) async fn open(endpoint: &Endpoint) -> Result<Self> {
        let stream = TcpStream::connect(endpoint.addr).await.with_context(|| format!("cannot connect to {}", endpoint.addr))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: Vec::with_capacity(16 * 1024), closed: false })
    }

    /// Whether the connection can no longer carry a request.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes `request` (prepared bytes) and reads its answer.
    pub(crate) async fn send(&mut self, request: &[u8]) -> Result<Answer> {
        if self.closed {
            bail!("the connection is closed");
        }
        let result = self.exchange(request).await;
        if result.is_err() {
            self.closed = true;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Answer> {
        self.stream.write_all(request).await?;
        let mut eof = false;
        loop {
            if !self.buf.is_empty() || eof {
                if let Parsed::Done(answer, used, close) = parse_answer(&self.buf, eof)? {
                    self.buf.drain(..used);
                    self.closed |= close || eof;
                    return Ok(answer);
                }
            }
            self.buf.reserve(16 * 1024);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                eof = true;
            }
        }
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// An `Authorization: Basic` value (RFC 6749 §2.3.1: both parts form-encoded first).
pub(crate) fn basic_auth(client_id: &str, secret: &str) -> String {
    use base64::Engine;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret))))
}

/// The value of a string member `key` of a JSON object, found without parsing the document:
/// good for the token answers of the hot loops, whose values (tokens) hold no escapes. Returns
/// `None` when the member is missing, is not a string, or holds an escape.
pub(crate) fn json_str_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let marker = format!("\"{key}\":");
    let start = json.find(&marker)? + marker.len();
    let rest = json[start..].trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    let value = &rest[..end];
    (!value.contains('\\')).then_some(value)
}

/// The value of query parameter `name` of a URL (absolute or path-absolute).
pub(crate) fn query_param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The `value` of the form field `name` in an HTML page (`name="x" value="y"`).
pub(crate) fn html_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// A cookie jar for one server: names and values, as `Set-Cookie` left them.
#[derive(Debug, Default, Clone)]
pub(crate) struct CookieJar(BTreeMap<String, String>);

impl CookieJar {
    /// Takes in every `Set-Cookie` of an answer. `Max-Age=0` (or a negative one) or an
    /// `Expires` date in the past removes the cookie: that is how servers clear one (Latchkey
    /// with `Max-Age=0`, oidc-provider through koa with an empty value and `Expires` in 1970).
    /// Paths and domains are not kept: the jar serves one server, and sending a cookie to a
    /// path it was not meant for changes nothing for the servers measured here.
    pub(crate) fn update(&mut self, answer: &Answer) {
        for v in answer.headers("set-cookie") {
            let mut parts = v.split(';');
            let Some((name, value)) = parts.next().and_then(|nv| nv.trim().split_once('=')) else { continue };
            let expired = parts.any(|a| {
                let Some((k, v)) = a.trim().split_once('=') else { return false };
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("max-age") {
                    v.parse::<i64>().is_ok_and(|n| n <= 0)
                } else if k.eq_ignore_ascii_case("expires") {
                    cookie_date_passed(v)
                } else {
                    false
                }
            });
            if expired {
                self.0.remove(name.trim());
            } else {
                self.0.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// The `Cookie` header to send, if there is any cookie.
    pub(crate) fn header(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "))
    }
}

/// Whether a cookie's `Expires` date (RFC 6265 §5.1.1; in practice the IMF-fixdate of
/// RFC 9110 §5.6.7, `Thu, 01 Jan 1970 00:00:00 GMT`) has passed. A date that does not parse is
/// taken as not passed: the cookie is kept, as a browser would keep a session cookie.
fn cookie_date_passed(date: &str) -> bool {
    time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc2822).is_ok_and(|d| d <= time::OffsetDateTime::now_utc())
}

/// A browser: a connection and a cookie jar, following no redirects by itself.
pub(crate) struct Browser {
    pub(crate) conn: Conn,
    pub(crate) jar: CookieJar,
    pub(crate) endpoint: Endpoint,
}

impl Browser {
    pub(crate) async fn open(endpoint: &Endpoint) -> Result<Self> {
        Ok(Self { conn: Conn::open(endpoint).await?, jar: CookieJar::default(), endpoint: endpoint.clone() })
    }

    async fn exchange(&mut self, request: Vec<u8>) -> Result<Answer> {
        if self.conn.is_closed() {
            self.conn = Conn::open(&self.endpoint).await?;
        }
        let a = self.conn.send(&request).await?;
        self.jar.update(&a);
        Ok(a)
    }

    /// GET of a path (or of an absolute URL on this server), with the jar's cookies.
    pub(crate) async fn get(&mut self, target: &str) -> Result<Answer> {
        let path = self.endpoint.path_on_this_server(target)?;
        let cookie = self.jar.header();
        let headers: Vec<(&str, &str)> = cookie.as_deref().map(|c| ("Cookie", c)).into_iter().collect();
        let request = self.endpoint.request("GET", &path, &headers, b"");
        self.exchange(request).await
    }

    /// A form POST as a page would send it: cookies and the issuer's `Origin`.
    pub(crate) async fn post_form(&mut self, path: &str, pairs: &[(&str, &str)]) -> Result<Answer> {
        let origin = self.endpoint.origin()?;
        let cookie = self.jar.header();
        let mut headers = vec![("Origin", origin.as_str())];
        headers.extend(cookie.as_deref().map(|c| ("Cookie", c)));
        let request = self.endpoint.post_form(path, &headers, &form(pairs));
        self.exchange(request).await
    }

    /// A form POST with other headers and no cookies (a client's back channel).
    pub(crate) async fn post_back_channel(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> Result<Answer> {
        let request = self.endpoint.post_form(path, headers, body);
        if self.conn.is_closed() {
            self.conn = Conn::open(&self.endpoint).await?;
        }
        self.conn.send(&request).await
    }
}

/// A fresh PKCE pair (RFC 7636 §4.1, §4.2): a 43-character verifier and its S256 challenge.
pub(crate) fn pkce_pair() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verifier = b64.encode(rand::random::<[u8; 32]>());
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Fails with the status and the start of the body when an answer's status is not in `want`.
pub(crate) fn expect_status(a: &Answer, want: &[u16], what: &str) -> Result<()> {
    if want.contains(&a.status) {
        Ok(())
    } else {
        Err(anyhow!("{what}: HTTP {} {:.300}", a.status, a.text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENGTH: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n";
    const CHUNKED: &[u8] = b"HTTP/1.1 302 Found\r\nlocation: /x?code=1\r\nset-cookie: a=1; Path=/\r\nset-cookie: b=2\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n\r\n";

    #[test]
    fn answers_parse_only_when_whole() {
        for (raw, status, body) in [(LENGTH, 200, &b"{\"a\":\"bc\"}\n"[..]), (CHUNKED, 302, &b"abcdefg"[..])] {
            for cut in 0..raw.len() {
                assert_eq!(parse_answer(&raw[..cut], false).unwrap(), Parsed::Incomplete, "cut at {cut}");
            }
            // A whole answer followed by the start of another takes only its own bytes.
            let mut two = raw.to_vec();
            two.extend_from_slice(b"HTTP/1.1");
            let Parsed::Done(a, used, close) = parse_answer(&two, false).unwrap() else { panic!("incomplete") };
            assert_eq!((a.status, a.body.as_slice(), used, close), (status, body, raw.len(), false));
        }
        let Parsed::Done(a, ..) = parse_answer(CHUNKED, false).unwrap() else { panic!("incomplete") };
        assert_eq!(a.location(), Some("/x?code=1"));
        assert_eq!(a.headers("Set-Cookie").collect::<Vec<_>>(), ["a=1; Path=/", "b=2"]);
    }

    #[test]
    fn answers_without_length_end_with_the_connection() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello";
        assert_eq!(parse_answer(raw, false).unwrap(), Parsed::Incomplete);
        let Parsed::Done(a, _, close) = parse_answer(raw, true).unwrap() else { panic!("incomplete") };
        assert_eq!((a.body.as_slice(), close), (&b"hello"[..], true));
        assert!(parse_answer(&LENGTH[..40], true).is_err(), "cut short by the server");
        assert!(parse_answer(b"HTTX/1.1 200 OK\r\n\r\n", false).is_err());
    }

    #[test]
    fn requests_carry_host_and_length() {
        let e = Endpoint::new(SocketAddr::from(([127, 0, 0, 1], 8080)), "http://127.0.0.1:8080/");
        let r = e.post_form("/oauth/token", &[("Authorization", "Basic eDp5")], "grant_type=client_credentials");
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: Basic eDp5\r\nContent-Length: 29\r\n\r\ngrant_type=client_credentials"
        );
        assert_eq!(
            String::from_utf8(e.request("GET", "/healthz", &[], b"")).unwrap(),
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
    }

    #[test]
    fn json_str_field_finds_flat_string_members() {
        let body = r#"{"access_token":"lk_at_abc","token_type":"Bearer","expires_in":3600,"refresh_token": "lk_rt_x-y","esc":"a\"b"}"#;
        assert_eq!(json_str_field(body, "access_token"), Some("lk_at_abc"));
        assert_eq!(json_str_field(body, "refresh_token"), Some("lk_rt_x-y"));
        assert_eq!(json_str_field(body, "expires_in"), None, "not a string");
        assert_eq!(json_str_field(body, "id_token"), None, "missing");
        assert_eq!(json_str_field(body, "esc"), None, "escaped");
    }

    #[test]
    fn cookie_jar_keeps_names_and_values_and_forgets_expired_ones() {
        let answer = |cookies: &str| Answer { status: 200, head: cookies.to_owned(), body: Vec::new() };
        let mut jar = CookieJar::default();
        jar.update(&answer("Set-Cookie: lk_browser=b1; Path=/; Max-Age=2592000; HttpOnly\r\nset-cookie: lk_session=s1; Path=/"));
        assert_eq!(jar.header().unwrap(), "lk_browser=b1; lk_session=s1");
        jar.update(&answer("set-cookie: lk_session=; Path=/; Max-Age=0"));
        assert_eq!(jar.header().unwrap(), "lk_browser=b1");
        // oidc-provider (koa) clears with a date in the past, and sets with one in the future.
        jar.update(&answer(
            "Set-Cookie: _session=s2; path=/; samesite=lax; httponly; expires=Tue, 24 Nov 2099 14:52:07 GMT\r\n\
             Set-Cookie: _interaction_resume=r1; path=/auth/x; expires=Mon, 23 Nov 2099 15:02:07 GMT",
        ));
        assert_eq!(jar.header().unwrap(), "_interaction_resume=r1; _session=s2; lk_browser=b1");
        jar.update(&answer(
            "Set-Cookie: _interaction_resume=; path=/auth/x; expires=Thu, 01 Jan 1970 00:00:00 GMT; samesite=lax; httponly\r\n\
             Set-Cookie: _interaction_resume.sig=sig; path=/auth/x; expires=Thu, 01 Jan 1970 00:00:00 GMT",
        ));
        assert_eq!(jar.header().unwrap(), "_session=s2; lk_browser=b1");
    }

    #[test]
    fn redirects_stay_on_the_server_or_are_refused() {
        let e = Endpoint::new(SocketAddr::from(([127, 0, 0, 1], 8080)), "http://127.0.0.1:8080");
        assert_eq!(e.path_on_this_server("/interaction/u1").unwrap(), "/interaction/u1");
        assert_eq!(e.path_on_this_server("http://127.0.0.1:8080/auth/u1?x=1").unwrap(), "/auth/u1?x=1");
        assert!(e.path_on_this_server("http://127.0.0.1:9999/cb?code=1").is_err());
        assert!(e.path_on_this_server("https://127.0.0.1:8080/auth").is_err());
    }

    #[test]
    fn query_params_and_form_fields() {
        let loc = "http://127.0.0.1:9/cb?code=lk_ac_1&state=s%20t&iss=http%3A%2F%2Fx";
        assert_eq!(query_param(loc, "code").as_deref(), Some("lk_ac_1"));
        assert_eq!(query_param(loc, "state").as_deref(), Some("s t"));
        assert_eq!(query_param("/cb", "code"), None);
        let html = r#"<input type="hidden" name="interaction" value="i-1"><input type="hidden" name="csrf" value="c2">"#;
        assert_eq!(html_field(html, "csrf").as_deref(), Some("c2"));
        assert_eq!(html_field(html, "email"), None);
    }

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        use base64::Engine;
        use sha2::Digest;
        let (v, c) = pkce_pair();
        assert_eq!(v.len(), 43);
        assert_eq!(c, base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(v.as_bytes())));
    }
}

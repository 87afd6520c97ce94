//! The edges of HTTP: what the protocol itself forbids is refused before any handler sees it,
//! on every endpoint (RFC 9112 §3.2, RFC 9110 §5.3). Sent over a raw socket, since a client
//! library would not send these requests at all.

use latchkey_testkit::spawn_app;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` as it is and returns the status code and the body of the answer.
async fn raw(port: u16, request: &str) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn a_request_without_one_host_or_with_two_authorizations_is_400() {
    let app = spawn_app().await;
    let port = app.port;
    let (status, body) = raw(port, "GET /.well-known/jwks.json HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("host_missing"), "{body}");
    let (status, body) = raw(port, "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("host_repeated"));
    let (status, _) = raw(port, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "HTTP/1.0 has no Host requirement");

    for (method, path) in [
        ("POST", "/oauth/token"),
        ("POST", "/oauth/introspect"),
        ("POST", "/oauth/revoke"),
        ("GET", "/oauth/userinfo"),
        ("GET", "/account/api/personal-tokens"),
        ("GET", "/.well-known/openid-configuration"),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic YTpi\r\nAuthorization: Bearer x\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw(port, &request).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(body.contains("authorization_repeated"), "{method} {path}: {body}");
    }
    let (status, _) = raw(port, &format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(status, 200);
}

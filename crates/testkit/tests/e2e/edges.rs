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

fn with_limits(max_connections: usize) -> latchkey_server::Settings {
    latchkey_server::Settings {
        http: latchkey_server::config::HttpSettings {
            header_timeout: Some(1),
            body_timeout: Some(1),
            idle_timeout: Some(2),
            max_connections: Some(max_connections),
        },
        ..Default::default()
    }
}

/// Reads until the server closes the connection; how long that took, and what it said.
async fn until_closed(conn: &mut tokio::net::TcpStream) -> (std::time::Duration, String) {
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), conn.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server never closed the connection");
    (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
}

/// Slow and idle clients: a head that never ends, a body that never comes and a kept-alive
/// connection that sends nothing are each closed after their timeout (set to 1, 1 and 2 s
/// here; 5, 5 and 120 s by default).
#[tokio::test]
async fn stalled_heads_bodies_and_idle_connections_are_closed() {
    let app = latchkey_testkit::spawn_app_with(with_limits(1000)).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", app.port));

    let mut head = connect().await.unwrap();
    head.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (took, _) = until_closed(&mut head).await;
    assert!(took < std::time::Duration::from_secs(5), "a head that never ends: closed after {took:?}");

    let mut silent = connect().await.unwrap();
    let (took, _) = until_closed(&mut silent).await;
    assert!(took < std::time::Duration::from_secs(5), "a connection that never sends: closed after {took:?}");

    let mut body = connect().await.unwrap();
    body.write_all(
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000\r\n\r\n",
    )
    .await
    .unwrap();
    let (took, answer) = until_closed(&mut body).await;
    assert!(took < std::time::Duration::from_secs(5), "a body that never comes: closed after {took:?}");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "never a 5xx: {answer}");

    let mut idle = connect().await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (took, answer) = until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took >= std::time::Duration::from_secs(1), "kept alive past the head timeout: {took:?}");
    assert!(took < std::time::Duration::from_secs(6), "then closed after the idle timeout: {took:?}");
}

/// Thousands of stalled connections cannot keep anyone out: past `max_connections` (500
/// here), each new connection closes the one that has waited longest without a request in
/// progress, so health checks and new clients are answered at once.
#[tokio::test]
async fn thousands_of_stalled_connections_leave_room_for_everyone_else() {
    let app = latchkey_testkit::spawn_app_with(with_limits(500)).await;
    let mut stalled = Vec::new();
    for _ in 0..3000 {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        stalled.push(conn);
    }
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build().unwrap();
    for path in ["/healthz", "/readyz", "/.well-known/openid-configuration"] {
        let r = http.get(app.url(path)).send().await.expect("answered while thousands of connections stall");
        assert_eq!(r.status(), 200, "{path}");
    }
    // The oldest stalled connections were closed to make room.
    let mut closed = 0;
    for conn in stalled.iter_mut().take(100) {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(std::time::Duration::from_millis(50), conn.read(&mut byte)).await {
            closed += 1;
        }
    }
    assert!(closed > 90, "the oldest stalled connections make room: {closed} of 100 closed");
}

//! Forwarding one request to moto, for the proxies that stand in for AWS in front of it (the
//! timing proxy, `proxy.rs`, and the fault proxy, `fault_proxy.rs`).
//!
//! A proxy must not pass on hop-by-hop headers (RFC 9110 §7.6.1). moto's server answers every
//! request with `Connection: close`; passed on, it made each function open a new connection for
//! every DynamoDB request, a TCP connect (on the TLS path, a handshake) that DynamoDB, which keeps
//! connections alive, never costs. The proxies' connections to the functions stay open; their own
//! connections to moto close as moto wants, inside the time the timing proxy counts as DynamoDB's.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

pub type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

/// Sends `parts` and `body` to `upstream` (scheme and authority) and reads the whole answer.
/// `Err` holds the status and message to answer instead.
pub async fn forward(
    client: &UpstreamClient,
    upstream: &str,
    parts: http::request::Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, (u16, String)> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = Request::builder()
        .method(parts.method)
        .uri(format!("{upstream}{path}"));
    let mut headers = parts.headers;
    // The Host header stays: the request is signed over it.
    strip_hop_by_hop(&mut headers);
    if let Some(map) = outgoing.headers_mut() {
        *map = headers;
    }
    let outgoing = outgoing
        .body(Full::new(body))
        .map_err(|_| (400, "unforwardable request".to_owned()))?;
    let answer = client
        .request(outgoing)
        .await
        .map_err(|err| (502, format!("upstream: {err}")))?;
    let (mut parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// Removes the headers that describe one connection rather than the message: those that
/// `Connection` names, and the fixed set of RFC 9110 §7.6.1. `Content-Length` goes too: the
/// body is forwarded whole, and hyper frames it again.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_go_and_message_headers_stay() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "18"),
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-crc32", "363771991"),
            ("host", "127.0.0.1:5000"),
        ] {
            headers.append(name, value.parse().unwrap());
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "host", "x-amz-crc32"]);
    }
}

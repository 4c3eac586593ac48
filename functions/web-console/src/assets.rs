//! The console's static files, embedded at build time: no file system is read at run time, so
//! no request path can name anything but these.

use http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};

/// The page runs only its own script and style, talks only to this origin, and cannot be framed.
/// Charts are SVG built by the script through the DOM, so no inline script or style is needed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../assets/favicon.svg"),
    },
];

/// The asset of that name with the console's headers, or `None`.
pub fn serve(name: &str) -> Option<Response<Body>> {
    let asset = ASSETS.iter().find(|a| a.name == name)?;
    // The page itself is revalidated on every load, so a new deployment's page (and the
    // scripts it names) is picked up at once; the scripts are cached briefly.
    let cache = if asset.name == "index.html" {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, asset.content_type)
        .header(header::CACHE_CONTROL, cache)
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(
            "Permissions-Policy",
            HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
        )
        .body(Body::Text(asset.body.to_owned()))
        .expect("static headers are valid");
    Some(response)
}

/// A redirect to the page at `/console`, relative so that a stage prefix (`/prod`) is kept.
pub fn to_page() -> Response<Body> {
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(header::LOCATION, "../console")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .body(Body::Empty)
        .expect("static headers are valid")
}

//! Static assets of the browser side: the JS client (`/client.js`, an ES module with no
//! dependencies) and its TypeScript declarations (`/client.d.ts`). Both are compiled into
//! the binary.

use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

/// `gateway-client.js`.
pub const CLIENT_JS: &str = include_str!("../../assets/gateway-client.js");
/// `gateway-client.d.ts`.
pub const CLIENT_DTS: &str = include_str!("../../assets/gateway-client.d.ts");

/// `GET /client.js`.
pub async fn client_js() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        CLIENT_JS,
    )
}

/// `GET /client.d.ts`.
pub async fn client_dts() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/typescript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        CLIENT_DTS,
    )
}

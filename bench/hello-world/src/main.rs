//! What the functions are measured against: the smallest `lambda_http` function there is.

use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_request: Request| async {
        Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(Body::from("hello world"))
            .map_err(Error::from)
    }))
    .await
}

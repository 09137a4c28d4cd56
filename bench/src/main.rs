//! The ceiling of the redirect benchmark: a bare actix-web handler answering every
//! `GET /sha512/{digest}` with a constant 302, with the same worker count and a Location of the
//! same length as tooltool's. Usage: `baseline-302 PORT`.

use actix_web::{App, HttpResponse, HttpServer, web};

const LOCATION: &str = "http://127.0.0.1:8080/_blobs/sha512/00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000?expires=1795322584&signature=018331764b7bb886cbcf257891b1ce9e097e3126b14a0c8a7e6b1f1ac2b1c2d3";

async fn redirect(_digest: web::Path<String>) -> HttpResponse {
    HttpResponse::Found().insert_header(("Location", LOCATION)).insert_header(("Cache-Control", "no-store")).finish()
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(8089);
    HttpServer::new(|| App::new().route("/sha512/{digest}", web::get().to(redirect)))
        .bind(("127.0.0.1", port))?
        .run()
        .await
}

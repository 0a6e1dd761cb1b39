//! The ceiling for `scripts/bench`: a bare actix-web server that answers every `GET` with
//! "hello", with as many workers as the handler would start (`PORTAL_WORKERS`, else the CPUs,
//! at most 8), on `127.0.0.1:$PORT`. Whatever the handler's rate is below this one is ours;
//! the rest is actix, the kernel's loopback and the load generator sharing the machine.
//!
//! `cargo build --release --example hello`, then `PORT=8080 target/release/examples/hello`.

use actix_web::{App, HttpResponse, HttpServer, web};

fn workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    std::env::var("PORTAL_WORKERS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(cpus)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(v) => v.parse().map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "PORT is not a port"))?,
        Err(_) => 8080,
    };
    HttpServer::new(|| App::new().default_service(web::get().to(|| async { HttpResponse::Ok().body("hello") })))
        .workers(workers())
        .bind(("127.0.0.1", port))?
        .run()
        .await
}

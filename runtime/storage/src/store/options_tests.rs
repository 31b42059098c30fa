//! The client timeouts and retries of [`StoreOptions`] reach the S3 client:
//! against a server that accepts connections and never answers, a request
//! fails after the configured timeout, once per configured retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::StoreOptions;

/// A TCP server that accepts connections, keeps them open and never
/// answers; returns its address and how many connections it accepted.
fn silent_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            open.push(conn);
        }
    });
    (addr, accepted)
}

fn store(addr: std::net::SocketAddr, options: &StoreOptions) -> object_store::aws::AmazonS3 {
    let b = AmazonS3Builder::new()
        .with_bucket_name("b")
        .with_endpoint(format!("http://{addr}"))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("k")
        .with_secret_access_key("s");
    options.apply(b).build().expect("build")
}

#[tokio::test]
async fn the_request_timeout_and_retry_count_are_applied() {
    let (addr, accepted) = silent_server();
    let options = StoreOptions {
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        max_retries: 2,
        retry_timeout: Duration::from_secs(30),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
    };
    let s3 = store(addr, &options);
    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(20), s3.get(&Path::from("k"))).await;
    let took = started.elapsed();
    assert!(res.expect("the request must time out by itself").is_err());
    // Three attempts of 300 ms each, plus small backoffs.
    assert!(
        took >= Duration::from_millis(850) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one attempt plus two retries"
    );

    // No retries: one attempt.
    let (addr, accepted) = silent_server();
    let s3 = store(
        addr,
        &StoreOptions {
            max_retries: 0,
            ..options
        },
    );
    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(20), s3.get(&Path::from("k"))).await;
    assert!(res.expect("timed out by itself").is_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

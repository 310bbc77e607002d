//! `serve` under hostile clients: 1,000 connections that send half a request head, trickle a
//! body a byte at a time, sit idle after one request, or announce a body far too large — while
//! the emulator delivers signed webhooks as Stripe does. Every real delivery is answered 2xx and
//! applied; the hostile connections are closed by the deadlines; and shutdown ends within its
//! grace period whatever is still open.

mod support;

use std::time::{Duration, Instant};

use sm_server::listener::Limits;
use support::{Server, World, compare, describe, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Hostile connections of each kind.
const EACH: usize = 250;

/// Whether the server closed `stream` within `limit` (what it sent first is read and dropped).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_neither_block_webhooks_nor_stay() {
    let world = World::start(5, 98, "hostile").await;
    let engine = world.engine();
    let limits = Limits {
        connections: 4 * EACH + 100,
        head: Duration::from_secs(2),
        request: Duration::from_secs(3),
        shutdown_grace: Duration::from_secs(2),
        ..Default::default()
    };
    let server =
        Server::start_limited(engine.clone(), None, Duration::from_secs(3600), 300, limits).await;
    let endpoint = world
        .stripe_ok(
            "POST",
            "/v1/webhook_endpoints",
            &[
                ("url", &server.webhook_url(&world.account_id())),
                ("enabled_events[]", "*"),
            ],
        )
        .await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let connection = world.connect(&engine, Some(&secret)).await;
    server.wait_for_sync(&world.http, &connection.label()).await;

    // The hostile ones.
    let address = server.base.trim_start_matches("http://").to_owned();
    let path = format!("/webhooks/{}/test", world.account_id());
    let mut half_heads = Vec::new();
    let mut trickles = Vec::new();
    let mut idle = Vec::new();
    let mut oversized = Vec::new();
    for _ in 0..EACH {
        let mut s = TcpStream::connect(&address).await.unwrap();
        s.write_all(format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: appl").as_bytes())
            .await
            .unwrap();
        half_heads.push(s);
        let mut s = TcpStream::connect(&address).await.unwrap();
        s.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{{")
                .as_bytes(),
        )
        .await
        .unwrap();
        trickles.push(s);
        let mut s = TcpStream::connect(&address).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        idle.push(s);
        let mut s = TcpStream::connect(&address).await.unwrap();
        s.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        oversized.push(s);
    }
    let opened = Instant::now();
    // The trickles go on, a byte each second.
    let trickling = tokio::spawn(async move {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for s in &mut trickles {
                let _ = s.write_all(b" ").await;
            }
        }
        trickles
    });

    // Real deliveries meanwhile.
    let (events_before, delivered_before) = (
        world.emulator_events().len(),
        world.delivery_counts().succeeded,
    );
    world.activity(40, 7).await;
    let expected = (world.emulator_events().len() - events_before) as u64;
    let delivered = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let counts = world.delivery_counts();
        counts.quiet() && counts.succeeded - delivered_before >= expected
    })
    .await;
    let counts = world.delivery_counts();
    assert!(
        delivered && counts.failed_attempts == 0,
        "deliveries: {expected} events, {} answered 2xx, {} failed attempts",
        counts.succeeded - delivered_before,
        counts.failed_attempts
    );
    eprintln!(
        "{expected} webhooks delivered and answered 2xx beside {} hostile connections",
        4 * EACH
    );
    let (differences, compared) = compare(
        &world,
        &engine,
        &connection,
        &[
            "balance_transactions",
            "customer_balance_transactions",
            "checkout_sessions",
            "reviews",
        ],
    );
    assert!(
        differences.is_empty(),
        "{} differences of {compared}:\n{}",
        differences.len(),
        describe(&differences)
    );

    // Each hostile connection closed by a deadline (head 2 s; body and answer 3 s).
    let margin = Duration::from_secs(4);
    for (kind, streams) in [
        ("half a head", &mut half_heads),
        ("idle after a request", &mut idle),
        ("a body too large", &mut oversized),
    ] {
        for s in streams.iter_mut() {
            let left = (limits.request + margin).saturating_sub(opened.elapsed());
            assert!(
                closed_within(s, left.max(Duration::from_millis(100))).await,
                "a connection with {kind} was still open after {:?}",
                opened.elapsed()
            );
        }
    }
    let mut trickles = trickling.await.unwrap();
    for s in &mut trickles {
        assert!(
            closed_within(s, Duration::from_secs(1)).await,
            "a trickling body was still open after {:?}",
            opened.elapsed()
        );
    }
    eprintln!(
        "all {} hostile connections closed within {:.1} s",
        4 * EACH,
        opened.elapsed().as_secs_f64()
    );

    // Shutdown with clients holding connections: over within the grace period.
    let mut holding = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(&address).await.unwrap();
        s.write_all(b"POST /webhooks/x/test HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
            .await
            .unwrap();
        holding.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    server.stop().await;
    let took = stopping.elapsed();
    assert!(
        took < limits.shutdown_grace + Duration::from_secs(3),
        "shutdown took {took:?}"
    );
    eprintln!(
        "shutdown with 50 connections held: {:.1} s",
        took.as_secs_f64()
    );
}

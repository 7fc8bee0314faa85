//! A TCP forwarder that delays every byte by a fixed time in each direction, so that a
//! loopback benchmark sees a real round-trip time (this kernel has no netem).
//!
//! ```text
//! delay-proxy RTT_MS MAP_FILE
//! ```
//! MAP_FILE has one `LISTEN_ADDR:PORT UPSTREAM_ADDR:PORT` per line. Each accepted
//! connection is forwarded to its upstream; data read on either side is written to the
//! other RTT_MS / 2 later, in order, without limiting throughput. Prints "ready" once
//! every listener is bound.
//!
//! With `DELAY_PROXY_LOG=1` in the environment, every chunk read is logged on stderr as
//! `CONN MS DIR BYTES`: the connection's number, milliseconds since it was accepted,
//! `>` (client to server) or `<`, and the size. Round trips show as alternations of
//! direction, each one RTT_MS apart (bench/rtt.sh counts them).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rtt, map] = args.as_slice() else {
        return Err("usage: delay-proxy RTT_MS MAP_FILE".into());
    };
    let one_way = Duration::from_micros(rtt.parse::<u64>()? * 1000 / 2);
    let mut listeners = Vec::new();
    for line in std::fs::read_to_string(map)?.lines() {
        let mut parts = line.split_whitespace();
        let (Some(listen), Some(upstream)) = (parts.next(), parts.next()) else {
            continue;
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{listen}: {e}"))?;
        listeners.push((listener, upstream.to_owned()));
    }
    println!("ready");
    let log = std::env::var_os("DELAY_PROXY_LOG").is_some_and(|v| v == "1");
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (listener, upstream) in listeners {
        let connections = connections.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let number = connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let log = log.then(|| Log {
                    number,
                    start: Instant::now(),
                });
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        forward(client, server, one_way, log).await;
                    }
                });
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// Where and when a connection's chunks are logged.
#[derive(Clone, Copy)]
struct Log {
    number: usize,
    start: Instant,
}

async fn forward(client: TcpStream, server: TcpStream, one_way: Duration, log: Option<Log>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::join!(
        pump(cr, sw, one_way, log.map(|l| (l, '>'))),
        pump(sr, cw, one_way, log.map(|l| (l, '<')))
    );
}

/// Reads from `from` and writes each chunk to `to` `delay` after it was read.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    log: Option<(Log, char)>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some((log, direction)) = log {
                        let ms = log.start.elapsed().as_secs_f64() * 1000.0;
                        eprintln!("{} {ms:.1} {direction} {n}", log.number);
                    }
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // Dropping tx ends the writer after the last chunk.
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

//! A TCP proxy that can make the instance behind it slow: every chunk the
//! instance sends back is passed on `delay` after it arrived. The caller
//! sees an instance whose answers take longer, over a connection that
//! stays up, which is what a stalled process or a saturated node looks
//! like from outside.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A proxy to one address, on a loopback port of its own.
#[derive(Debug)]
pub struct DelayProxy {
    /// Where callers connect.
    pub addr: SocketAddr,
    delay_us: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl DelayProxy {
    /// A proxy to `upstream` with no delay, listening on `listen` (port 0
    /// for any).
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let delay_us = Arc::new(AtomicU64::new(0));
        let delay = delay_us.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let delay = delay.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        pipe(client, server, delay).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            delay_us,
            accept,
        })
    }

    /// Delays every chunk the instance sends from now on by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay_us.store(us, Ordering::SeqCst);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, delay_us: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    // Each chunk is held until `delay` after it arrived, while the next
    // ones are read: the instance answers late, not slower and slower.
    let (chunks, mut held) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = Duration::from_micros(delay_us.load(Ordering::SeqCst));
            let due = tokio::time::Instant::now() + delay;
            if chunks.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let responses = async move {
        while let Some((due, chunk)) = held.recv().await {
            tokio::time::sleep_until(due).await;
            if client_write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, read, responses);
}

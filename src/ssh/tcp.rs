//! The TCP connection to a host, and [`QuickAck`], the socket wrapper that acknowledges
//! at once during the handshake.

use std::net::SocketAddr;

use crate::error::{Error, ErrorKind, Result};
use crate::ssh::connect_options::ConnectOptions;

/// A client socket that acknowledges at once what it receives (`TCP_QUICKACK`) during the
/// first [`QuickAck::READS`] reads: the handshake, authentication and the first command.
///
/// sshd leaves Nagle's algorithm on for sessions without a terminal, so of two small
/// packets written back to back (after authentication: a global request, then the
/// channel confirmation) the second waits until the first is acknowledged, and Linux
/// delays that acknowledgement by up to 40 ms. `TCP_NODELAY` on our side does not help;
/// an immediate acknowledgement does. Linux clears the flag again on its own, hence once
/// per read. Bulk transfers later keep the kernel's delayed acknowledgements (fewer
/// packets, no extra system call per read).
pub(crate) struct QuickAck {
    inner: tokio::net::TcpStream,
    reads_left: u32,
}

impl QuickAck {
    /// About 50 reads take a connection to its first command's exit status.
    const READS: u32 = 256;

    pub(crate) fn new(inner: tokio::net::TcpStream) -> QuickAck {
        let mut stream = QuickAck {
            inner,
            reads_left: Self::READS,
        };
        stream.acknowledge_quickly();
        stream
    }

    #[cfg(target_os = "linux")]
    fn acknowledge_quickly(&mut self) {
        use std::os::unix::io::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket owned by `self.inner`; the option value is a c_int that
        // outlives the call, with its size passed. Failure only costs the optimisation.
        unsafe {
            libc::setsockopt(
                self.inner.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn acknowledge_quickly(&mut self) {}
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.reads_left > 0 && matches!(poll, std::task::Poll::Ready(Ok(()))) {
            this.reads_left -= 1;
            this.acknowledge_quickly();
        }
        poll
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub(crate) async fn tcp_connect(options: &ConnectOptions) -> Result<tokio::net::TcpStream> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((options.hostname.as_str(), options.port))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Resolve,
                format!("cannot resolve host name {:?}", options.hostname),
            )
            .with_source(e)
        })?
        .collect();
    let mut last_error = None;
    for addr in &addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                // The first exec otherwise stalls ~40 ms on Nagle / delayed ACK.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_error = Some((addr, e)),
        }
    }
    match last_error {
        Some((addr, e)) => {
            let message = format!("cannot connect to {addr}");
            Err(Error::new(ErrorKind::Connect, message).with_source(e))
        }
        None => Err(Error::new(
            ErrorKind::Resolve,
            format!("host name {:?} has no addresses", options.hostname),
        )),
    }
}

//! One listening socket whose connections go to whichever server serves
//! now. A replica answers as a standby and then, once it leads, as the
//! leader, on the same port: the standby's server stops taking connections
//! the moment the leader's asks for them, and no connection that arrives
//! in between is refused.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

/// Connections waiting for a server to take them.
const BACKLOG: usize = 64;

pub struct Acceptor {
    local_addr: SocketAddr,
    handoff: mpsc::UnboundedSender<mpsc::Sender<TcpStream>>,
    accepting: JoinHandle<()>,
}

impl Acceptor {
    /// Accepts on `listener` until the acceptor is dropped and the last
    /// server it handed connections to has stopped.
    pub fn new(listener: TcpListener) -> std::io::Result<Acceptor> {
        let local_addr = listener.local_addr()?;
        let (handoff, servers) = mpsc::unbounded_channel();
        let accepting = tokio::spawn(accept(listener, servers));
        Ok(Acceptor {
            local_addr,
            handoff,
            accepting,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Returns once the port is closed, which is when the last server
    /// given connections has stopped: the port can be bound again then.
    pub async fn close(self) {
        drop(self.handoff);
        let _ = self.accepting.await;
    }

    /// From now on, new connections go to the stream returned; the stream
    /// handed out before ends.
    pub fn connections(&self) -> ReceiverStream<TcpStream> {
        let (to, connections) = mpsc::channel(BACKLOG);
        let _ = self.handoff.send(to);
        ReceiverStream::new(connections)
    }
}

async fn accept(
    listener: TcpListener,
    mut servers: mpsc::UnboundedReceiver<mpsc::Sender<TcpStream>>,
) {
    let mut current: Option<mpsc::Sender<TcpStream>> = None;
    let mut acceptor_gone = false;
    loop {
        let live = current.as_ref().filter(|s| !s.is_closed()).cloned();
        if acceptor_gone && live.is_none() {
            return;
        }
        tokio::select! {
            // The newest server takes the connections; dropping the one
            // before ends its stream.
            newer = servers.recv(), if !acceptor_gone => match newer {
                Some(newer) => current = Some(newer),
                None => acceptor_gone = true,
            },
            // Without a live server, connections wait in the kernel's
            // backlog for the next.
            accepted = listener.accept(), if live.is_some() => match accepted {
                Ok((socket, _)) => {
                    let _ = socket.set_nodelay(true);
                    if let Some(server) = live
                        && let Err(mpsc::error::SendError(socket)) = server.send(socket).await
                    {
                        // It stopped meanwhile: the next server takes it.
                        if !acceptor_gone && let Some(next) = servers.recv().await {
                            let _ = next.send(socket).await;
                            current = Some(next);
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = closed(live.clone()), if acceptor_gone => return,
        }
    }
}

async fn closed(server: Option<mpsc::Sender<TcpStream>>) {
    if let Some(server) = server {
        server.closed().await;
    }
}

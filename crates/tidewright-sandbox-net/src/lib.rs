//! The first process in a step's sandbox (`tidewright-sandbox-net`): the
//! sandbox has a network of its own with nothing in it but loopback, so
//! this listens there for the ways out the worker opened (its egress
//! proxy, the control plane, the model proxy), each relayed to a socket of
//! the worker's bound into the sandbox, then runs the step's program and
//! ends as it ends.
//!
//! It outlives a stop signal sent to the step's process group (the
//! program decides how to end; this then ends as it did), and when the
//! program is killed by a signal it dies of the same one, so the worker
//! reads the same exit as without it.
//!
//! Started with `--overlay`, it runs first, just outside the sandbox: it
//! mounts a seed's copy-on-write layers and becomes bubblewrap (see
//! [`overlay`]).

pub mod overlay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio::net::{TcpListener, UnixStream};

/// The executable's name, which the worker finds beside `tidewright`.
pub const PROGRAM: &str = "tidewright-sandbox-net";

/// One listener: a loopback address in the sandbox and the worker's
/// socket it leads to, said `127.0.0.1:3128=/run/tidewright/proxy.sock`.
#[derive(Debug, Clone, PartialEq)]
pub struct Relay {
    pub listen: SocketAddr,
    pub socket: PathBuf,
}

impl Relay {
    pub fn arg(&self) -> String {
        format!("{}={}", self.listen, self.socket.display())
    }

    fn parse(arg: &str) -> Option<Relay> {
        let (listen, socket) = arg.split_once('=')?;
        Some(Relay {
            listen: listen.parse().ok()?,
            socket: socket.into(),
        })
    }
}

/// Runs with `args` as `[RELAY...] -- PROGRAM [ARG...]`. Failures before
/// the program starts are said on stderr, as the step's, and exit 127.
pub fn main(args: &[String]) -> ExitCode {
    if args.first().map(String::as_str) == Some(overlay::FLAG) {
        return overlay::main(args);
    }
    let Some(split) = args.iter().position(|a| a == "--") else {
        eprintln!("tidewright sandbox: usage: {PROGRAM} RELAY... -- PROGRAM [ARG...]");
        return ExitCode::from(127);
    };
    let relays: Option<Vec<Relay>> = args[..split].iter().map(|a| Relay::parse(a)).collect();
    let (Some(relays), Some((program, program_args))) = (relays, args[split + 1..].split_first())
    else {
        eprintln!("tidewright sandbox: bad arguments: {}", args.join(" "));
        return ExitCode::from(127);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tidewright sandbox: {e}");
            return ExitCode::from(127);
        }
    };
    runtime.block_on(run(relays, program, program_args))
}

async fn run(relays: Vec<Relay>, program: &str, args: &[String]) -> ExitCode {
    // Stop signals are the program's to act on; this waits for it. A
    // handler (not "ignore") is reset to the default by the exec, so the
    // program gets them as it would.
    let mut stops = Vec::new();
    for kind in [
        tokio::signal::unix::SignalKind::terminate(),
        tokio::signal::unix::SignalKind::interrupt(),
        tokio::signal::unix::SignalKind::hangup(),
    ] {
        match tokio::signal::unix::signal(kind) {
            Ok(stream) => stops.push(stream),
            Err(e) => {
                eprintln!("tidewright sandbox: {e}");
                return ExitCode::from(127);
            }
        }
    }
    for relay in relays {
        // Up before the program starts, so its first connection finds it.
        let listener = match TcpListener::bind(relay.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("tidewright sandbox: listening on {}: {e}", relay.listen);
                return ExitCode::from(127);
            }
        };
        tokio::spawn(accept(listener, relay.socket));
    }
    let mut child = match tokio::process::Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("tidewright sandbox: could not start {program:?}: {e}");
            return ExitCode::from(127);
        }
    };
    let status = match child.wait().await {
        Ok(status) => status,
        Err(e) => {
            eprintln!("tidewright sandbox: waiting for {program:?}: {e}");
            return ExitCode::from(127);
        }
    };
    drop(stops);
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        die_of(signal);
    }
    ExitCode::from(status.code().unwrap_or(1) as u8)
}

/// Ends this process by `signal`, as the program ended (what the
/// signal's default action does, though this process handles it).
fn die_of(signal: i32) {
    use nix::sys::signal::Signal;
    match Signal::try_from(signal) {
        // The ones handled here: their default action, emulated.
        Ok(Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP) => {
            let _ = signal_hook::low_level::emulate_default_handler(signal);
        }
        Ok(other) => {
            let _ = nix::sys::signal::raise(other);
        }
        Err(_) => {}
    }
}

async fn accept(listener: TcpListener, socket: PathBuf) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        // Relayed as written: no small write waits on Nagle's algorithm.
        let _ = inbound.set_nodelay(true);
        let socket = socket.clone();
        tokio::spawn(async move {
            // Refused on the worker's side (the attempt ended): the client
            // sees its connection closed.
            if let Ok(mut outbound) = UnixStream::connect(&socket).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_is_said_and_read_back_the_same() {
        let relay = Relay {
            listen: "127.0.0.1:3128".parse().expect("addr"),
            socket: "/run/tidewright/proxy.sock".into(),
        };
        assert_eq!(Relay::parse(&relay.arg()), Some(relay));
        assert_eq!(Relay::parse("nonsense"), None);
    }
}

//! A drain against a control plane the test plays over loopback, so the
//! order of the messages on the stream is the test's to choose.

use std::pin::Pin;
use std::sync::Mutex;

use tidewright_api::v1::agent_service_server::{AgentService, AgentServiceServer};
use tidewright_api::v1::worker_message::Kind as From;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::*;

type Outbound = Pin<Box<dyn Stream<Item = Result<v1::ServerMessage, Status>> + Send>>;

/// One worker session: what the worker sends reaches the test (`None` once
/// its stream ends), and what the test sends reaches the worker.
struct Plane {
    heard: mpsc::UnboundedSender<Option<v1::WorkerMessage>>,
    say: Mutex<Option<mpsc::UnboundedReceiver<v1::ServerMessage>>>,
}

#[tonic::async_trait]
impl AgentService for Plane {
    type ConnectStream = Outbound;
    type GetSeedStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<v1::SeedDownload, Status>> + Send>,
    >;

    async fn put_seed(
        &self,
        _: Request<Streaming<v1::SeedUpload>>,
    ) -> Result<Response<v1::StoredSeed>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn get_seed(
        &self,
        _: Request<v1::GetSeedRequest>,
    ) -> Result<Response<Self::GetSeedStream>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn list_seeds(
        &self,
        _: Request<v1::ListSeedsRequest>,
    ) -> Result<Response<v1::ListSeedsResponse>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn delete_seed(
        &self,
        _: Request<v1::DeleteSeedRequest>,
    ) -> Result<Response<v1::StoredSeed>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn connect(
        &self,
        request: Request<Streaming<v1::WorkerMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let said = self.say.lock().expect("not poisoned").take();
        let said = said.ok_or_else(|| Status::unavailable("one session only"))?;
        let mut inbound = request.into_inner();
        let heard = self.heard.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let _ = heard.send(Some(message));
            }
            let _ = heard.send(None);
        });
        Ok(Response::new(Box::pin(
            UnboundedReceiverStream::new(said).map(Ok),
        )))
    }

    async fn list_agents(
        &self,
        _: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn list_servers(
        &self,
        _: Request<v1::ListServersRequest>,
    ) -> Result<Response<v1::ListServersResponse>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn put_checkpoint(
        &self,
        _: Request<v1::Checkpoint>,
    ) -> Result<Response<v1::PutCheckpointResponse>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn get_checkpoint(
        &self,
        _: Request<v1::GetCheckpointRequest>,
    ) -> Result<Response<v1::Checkpoint>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn put_branch(
        &self,
        _: Request<v1::StepBranch>,
    ) -> Result<Response<v1::PutBranchResponse>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn get_branch(
        &self,
        _: Request<v1::GetBranchRequest>,
    ) -> Result<Response<v1::StepBranch>, Status> {
        Err(Status::unimplemented("not played"))
    }
}

/// The next message the worker sends, past its heartbeats; `None` once its
/// stream has ended.
async fn next(heard: &mut mpsc::UnboundedReceiver<Option<v1::WorkerMessage>>) -> Option<From> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), heard.recv())
            .await
            .expect("the worker said something within 30 s")
            .flatten()?;
        match message.kind {
            Some(From::Heartbeat(_)) => continue,
            kind => return kind,
        }
    }
}

#[tokio::test]
async fn a_draining_worker_runs_what_was_assigned_before_its_drain_was_taken() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("its address");
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let (say, said) = mpsc::unbounded_channel();
    let plane = Plane {
        heard: heard_tx,
        say: Mutex::new(Some(said)),
    };
    let serve = tonic::transport::Server::builder()
        .add_service(AgentServiceServer::new(plane))
        .serve_with_incoming(TcpListenerStream::new(listener));
    let _server = AbortOnDrop(tokio::spawn(async move {
        let _ = serve.await;
    }));

    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = WorkerConfig::new(
        format!("http://{address}"),
        "leaving",
        dir.path().join("work"),
    );
    config.slots = 1;
    config.sandbox.mode = sandbox::SandboxMode::Off;
    config.checkpoint_every = None;
    let (stop, stopped) = oneshot::channel::<()>();
    let started = start(config, async {
        let _ = stopped.await;
    })
    .await
    .expect("started");

    assert!(matches!(next(&mut heard).await, Some(From::Register(_))));
    say.send(v1::ServerMessage {
        kind: Some(Kind::Registered(v1::Registered {
            worker_id: "1".into(),
            heartbeat_interval_ms: 60_000,
        })),
    })
    .expect("the worker listens");
    assert!(matches!(next(&mut heard).await, Some(From::Credits(_))));

    // The worker drains with nothing running, while the control plane,
    // which has not read the drain yet, assigns it a step.
    stop.send(()).expect("the worker watches its stop");
    assert!(matches!(next(&mut heard).await, Some(From::Drain(_))));
    let attempt = v1::AttemptRef {
        task_id: "t".into(),
        step_id: "s".into(),
        attempt: 1,
    };
    say.send(v1::ServerMessage {
        kind: Some(Kind::Assignment(v1::Assignment {
            attempt: Some(attempt.clone()),
            step: Some(v1::StepSpec {
                id: "s".into(),
                runtime: Some(v1::step_spec::Runtime::Noop(v1::NoopRuntime {})),
                ..Default::default()
            }),
            inputs_json: "{}".into(),
            task_name: "t".into(),
            ..Default::default()
        })),
    })
    .expect("the worker listens");
    say.send(v1::ServerMessage {
        kind: Some(Kind::DrainTaken(v1::DrainTaken {})),
    })
    .expect("the worker listens");

    let result = loop {
        match next(&mut heard).await {
            Some(From::Result(result)) => break result,
            Some(_) => continue,
            None => panic!("the worker left with its assignment unrun"),
        }
    };
    assert_eq!(result.attempt, Some(attempt));
    assert_eq!(
        result.outcome,
        v1::Outcome::Succeeded as i32,
        "{}",
        result.error
    );
    // Then it leaves, as a drained worker does.
    assert!(next(&mut heard).await.is_none());
    drop(say);
    started.ended().await.expect("a clean end");
}

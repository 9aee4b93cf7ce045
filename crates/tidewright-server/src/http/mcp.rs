//! The fleet's MCP tools over HTTP: `/mcp` on the HTTP port, MCP's
//! streamable HTTP transport, stateless (any replica that leads answers any
//! request). A lead agent outside tidewright, or any MCP client, submits tasks
//! and templates, waits for them, reads their results and logs, lists and
//! cancels them as the caller its bearer token names: the tools call the
//! application services in process, with the same roles, tenants, limits
//! and audit as gRPC. (Inside a step, `tidewright mcp` serves the same tools over
//! stdio with the step's token, and the task's shared state besides.)

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use tidewright_api::v1;
use tidewright_engine::Error as Refusal;
use tidewright_engine::access::Identity;
use tidewright_engine::service::{Call, Tasks};
use tidewright_mcp::{TaskCalls, Tools, WatchedEvents};
use tonic::Status;

use crate::error::{Error, http_error};
use crate::http::app::{Access, App};
use crate::wire;

/// `/mcp`, for the HTTP port's router.
pub fn routes(app: Arc<App>, max_body: usize) -> Router<Arc<App>> {
    let endpoint = Endpoint { app: app.clone() };
    let mut config = StreamableHttpServerConfig::default()
        // Callers prove who they are with a bearer token, which a page
        // another site serves cannot send: the Host check guards servers
        // without one.
        .disable_allowed_hosts();
    // No session to lose in a failover: each request stands alone.
    config.legacy_session_mode = false;
    config.json_response = true;
    config.max_request_body_bytes = max_body;
    let service = StreamableHttpService::new(
        move || Ok(endpoint.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn_with_state(app, authenticate))
}

/// Who calls: a bearer token's identity (and its rate, as gRPC checks
/// them), put on the request for the tools; otherwise 401, before MCP.
async fn authenticate(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    if !request.headers().contains_key(http::header::AUTHORIZATION) {
        let refused = Error::Service(Refusal::Unauthenticated(
            "a bearer token (authorization: Bearer <token>) is required".into(),
        ));
        return http_error(&refused.into()).into_response();
    }
    match app.caller(request.headers(), Access::Change) {
        Ok((identity, _)) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(refused) => http_error(&refused.into()).into_response(),
    }
}

#[derive(Clone)]
struct Endpoint {
    app: Arc<App>,
}

impl ServerHandler for Endpoint {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                tidewright_mcp::SERVER_NAME,
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "tidewright's fleet: submit tasks (a task file's fields) or templates for its \
                 agents to run, wait for them, read their results and logs, list and \
                 cancel them.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(
            tidewright_mcp::fleet_tools(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Identity>())
            .cloned()
            .ok_or_else(|| McpError::internal_error("the request names no caller", None))?;
        let services = self
            .app
            .services()
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let calls = AsCaller {
            tasks: services.tasks.clone(),
            caller,
        };
        Ok(Tools::fleet(Arc::new(calls)).call(request).await?.into())
    }
}

/// The TaskService calls, made in process on the application services as
/// `caller`.
struct AsCaller {
    tasks: Tasks,
    caller: Identity,
}

impl AsCaller {
    /// `message` converted by `convert` into a call as this caller.
    fn call<R, C>(&self, message: R, convert: impl FnOnce(R) -> C) -> Call<C> {
        Call::new(self.caller.clone(), convert(message))
    }
}

/// A refusal as the MCP tools report it.
fn refused(e: tidewright_engine::Error) -> Status {
    Status::from(Error::from(e))
}

#[async_trait::async_trait]
impl TaskCalls for AsCaller {
    async fn submit_task(
        &self,
        request: v1::SubmitTaskRequest,
    ) -> Result<v1::SubmitTaskResponse, Status> {
        let call = self.call(request, wire::submit);
        Ok(wire::submitted(
            self.tasks.submit_task(call).await.map_err(refused)?,
        ))
    }
    async fn submit_template(
        &self,
        request: v1::SubmitTemplateRequest,
    ) -> Result<v1::SubmitTaskResponse, Status> {
        let call = self.call(request, wire::submit_template);
        Ok(wire::submitted(
            self.tasks.submit_template(call).await.map_err(refused)?,
        ))
    }
    async fn get_task(&self, request: v1::GetTaskRequest) -> Result<v1::Task, Status> {
        let call = self.call(request.task_id, wire::task_ref);
        Ok(wire::task_to_proto(
            self.tasks.get_task(call).await.map_err(refused)?,
        ))
    }
    async fn list_tasks(
        &self,
        request: v1::ListTasksRequest,
    ) -> Result<v1::ListTasksResponse, Status> {
        let call = Call::new(self.caller.clone(), wire::list_tasks(request)?);
        Ok(wire::task_page(
            self.tasks.list_tasks(call).await.map_err(refused)?,
        ))
    }
    async fn cancel_task(&self, request: v1::CancelTaskRequest) -> Result<v1::Task, Status> {
        let call = self.call(request.task_id, wire::task_ref);
        Ok(wire::task_to_proto(
            self.tasks.cancel_task(call).await.map_err(refused)?,
        ))
    }
    async fn steer_step(
        &self,
        request: v1::SteerStepRequest,
    ) -> Result<v1::SteerStepResponse, Status> {
        let call = Call::new(self.caller.clone(), wire::steer_step(request));
        Ok(wire::steered(
            self.tasks.steer_step(call).await.map_err(refused)?,
        ))
    }
    async fn watch_task(&self, request: v1::WatchTaskRequest) -> Result<WatchedEvents, Status> {
        let call = self.call(request, wire::watch_task);
        Ok(wire::events(
            self.tasks.watch_task(call).await.map_err(refused)?,
        ))
    }
}

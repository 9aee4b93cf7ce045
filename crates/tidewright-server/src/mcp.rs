//! The fleet's MCP tools over HTTP: `/mcp` on the HTTP port, MCP's
//! streamable HTTP transport, stateless (any replica that leads answers any
//! request). A lead agent outside tidewright, or any MCP client, submits tasks
//! and templates, waits for them, reads their results and logs, lists and
//! cancels them as the caller its bearer token names: the tools make the
//! TaskService calls in process, with the same roles, tenants, limits and
//! audit as gRPC. (Inside a step, `tidewright mcp` serves the same tools over
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
use tidewright_api::v1::task_service_server::TaskService;
use tidewright_engine::access::Identity;
use tidewright_mcp::{TaskCalls, Tools, WatchedEvents};
use tonic::Status;

use crate::error::{Error, http_error};
use crate::http_state::{Access, HttpState};
use crate::task_service::TaskGrpc;

/// `/mcp`, for the HTTP port's router.
pub fn routes(status: Arc<HttpState>, max_body: usize) -> Router<Arc<HttpState>> {
    let endpoint = Endpoint {
        status: status.clone(),
    };
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
        .layer(middleware::from_fn_with_state(status, authenticate))
}

/// Who calls: a bearer token's identity (and its rate, as gRPC checks
/// them), put on the request for the tools; otherwise 401, before MCP.
async fn authenticate(
    State(status): State<Arc<HttpState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !request.headers().contains_key(http::header::AUTHORIZATION) {
        let refused = Error::Unauthenticated(
            "a bearer token (authorization: Bearer <token>) is required".into(),
        );
        return http_error(&refused.into()).into_response();
    }
    match status.caller(request.headers(), Access::Change) {
        Ok((identity, _)) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(refused) => http_error(&refused.into()).into_response(),
    }
}

#[derive(Clone)]
struct Endpoint {
    status: Arc<HttpState>,
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
            .status
            .services()
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let calls = AsCaller {
            tasks: TaskGrpc(services.tasks.clone()),
            caller,
        };
        Ok(Tools::fleet(Arc::new(calls)).call(request).await?.into())
    }
}

/// The TaskService calls, made in process as `caller`.
struct AsCaller {
    tasks: TaskGrpc,
    caller: Identity,
}

impl AsCaller {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(self.caller.clone());
        request
    }
}

#[async_trait::async_trait]
impl TaskCalls for AsCaller {
    async fn submit_task(
        &self,
        request: v1::SubmitTaskRequest,
    ) -> Result<v1::SubmitTaskResponse, Status> {
        Ok(self
            .tasks
            .submit_task(self.request(request))
            .await?
            .into_inner())
    }
    async fn submit_template(
        &self,
        request: v1::SubmitTemplateRequest,
    ) -> Result<v1::SubmitTaskResponse, Status> {
        Ok(self
            .tasks
            .submit_template(self.request(request))
            .await?
            .into_inner())
    }
    async fn get_task(&self, request: v1::GetTaskRequest) -> Result<v1::Task, Status> {
        Ok(self
            .tasks
            .get_task(self.request(request))
            .await?
            .into_inner())
    }
    async fn list_tasks(
        &self,
        request: v1::ListTasksRequest,
    ) -> Result<v1::ListTasksResponse, Status> {
        Ok(self
            .tasks
            .list_tasks(self.request(request))
            .await?
            .into_inner())
    }
    async fn cancel_task(&self, request: v1::CancelTaskRequest) -> Result<v1::Task, Status> {
        Ok(self
            .tasks
            .cancel_task(self.request(request))
            .await?
            .into_inner())
    }
    async fn watch_task(&self, request: v1::WatchTaskRequest) -> Result<WatchedEvents, Status> {
        Ok(self
            .tasks
            .watch_task(self.request(request))
            .await?
            .into_inner())
    }
}

//! Console sessions: sign in with a token, see who you are, sign out.

use super::*;
use tidewright_engine::Error as Refusal;

#[derive(Deserialize, ToSchema)]
pub(super) struct SignIn {
    /// A tidewright token or a JWT.
    token: String,
}

/// A new session: 201, its cookie, and who it is.
pub(super) type SignedIn = (StatusCode, [(HeaderName, String); 1], Json<SessionView>);

/// Who a session (or a bearer token) is, and what a page must send with a
/// change.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionView {
    name: String,
    role: String,
    /// The tenants it may see; `["*"]` for all.
    tenants: Vec<String>,
    /// For `X-CSRF-Token` on requests that change something; only for a
    /// session, which the cookie carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

fn session_view(identity: &Identity, csrf: Option<String>) -> SessionView {
    SessionView {
        name: identity.name.clone(),
        role: identity.role.to_string(),
        tenants: match &identity.tenants {
            Tenants::All => vec!["*".into()],
            Tenants::Only(tenants) => tenants.clone(),
        },
        csrf_token: csrf,
    }
}

#[utoipa::path(post, path = "/session", tag = "session",
    summary = "Sign in: a token opens a console session (a cookie)",
    request_body(content = SignIn, content_type = "application/json"),
    responses((status = 201, description = "signed in; Set-Cookie carries the session", body = SessionView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(super) async fn open_session(
    State(app): State<Arc<App>>,
    body: Result<String, StringRejection>,
) -> Result<SignedIn, ApiError> {
    let body = text_body(body)?;
    let sign_in: SignIn = serde_json::from_str(&body)
        .map_err(|e| Error::invalid("token", format!("send {{\"token\": \"...\"}}: {e}")))?;
    let identity = app
        .authenticator()
        .authenticate_token(sign_in.token.trim())?;
    if identity.step.is_some() {
        return Err(Error::Service(Refusal::PermissionDenied(
            "a step token is for its step's agent, not for the console".into(),
        ))
        .into());
    }
    app.authenticator().check_rate(&identity)?;
    let (id, session) = app.sessions.open(identity)?;
    Ok((
        StatusCode::CREATED,
        [(
            header::SET_COOKIE,
            session::set_cookie(Some(&id), app.secure_cookies()),
        )],
        Json(session_view(&session.identity, Some(session.csrf))),
    ))
}

#[utoipa::path(get, path = "/session", tag = "session",
    summary = "Who the caller is (its session, or its bearer token)",
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
pub(super) async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer<SessionView> {
    let (identity, session) = app.caller(&headers, Access::Read)?;
    Ok(Json(session_view(&identity, session.map(|(_, s)| s.csrf))))
}

#[utoipa::path(delete, path = "/session", tag = "session",
    summary = "Sign out: the session ends and its cookie is cleared",
    responses((status = 204, description = "signed out"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn close_session(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<(StatusCode, [(HeaderName, String); 1]), ApiError> {
    let (_, session) = app.caller(&headers, Access::Change)?;
    if let Some((id, _)) = session {
        app.sessions.close(&id);
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            session::set_cookie(None, app.secure_cookies()),
        )],
    ))
}

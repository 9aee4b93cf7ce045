//! The template routes: the task templates the control plane offers, and
//! submitting the task one makes with the parameters given.

use std::collections::BTreeMap;

use tidewright_engine::service::SubmitTemplate;

use super::*;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ParameterView {
    name: String,
    /// string, integer, number or boolean.
    r#type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    required: bool,
    /// Used when the parameter is not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    default: Option<String>,
    /// The only values accepted, when any are listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TemplateView {
    name: String,
    description: String,
    parameters: Vec<ParameterView>,
    /// "built-in", or the server's file it was read from.
    origin: String,
    /// The template's file (YAML), placeholders and all.
    file: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct TemplateList {
    templates: Vec<TemplateView>,
}

/// The parameters to render a template with.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RunBody {
    /// Each parameter's value: text, or a JSON number or boolean.
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct RunQuery {
    #[serde(default)]
    tenant: String,
}

fn template_view(t: v1::TaskTemplate) -> TemplateView {
    TemplateView {
        name: t.name,
        description: t.description,
        parameters: t
            .parameters
            .into_iter()
            .map(|p| ParameterView {
                name: p.name,
                r#type: p.r#type,
                description: p.description,
                required: p.required,
                default: p.default_value,
                allowed: p.allowed,
            })
            .collect(),
        origin: t.origin,
        file: t.file,
    }
}

#[utoipa::path(get, path = "/templates", tag = "templates",
    summary = "The task templates on offer: the built-in set and the server's --templates-dir (ListTemplates)",
    responses((status = 200, body = TemplateList), Refused))]
pub(super) async fn list_templates(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Answer<TemplateList> {
    let list = call(&app, &headers, Access::Read, (), |s, r| async move {
        s.tasks.list_templates(r).await
    })
    .await?;
    Ok(Json(TemplateList {
        templates: list
            .into_iter()
            .map(|t| template_view(wire::template(t)))
            .collect(),
    }))
}

/// A parameter's value as the template reads it: text.
fn parameter_text(name: &str, value: serde_json::Value) -> Result<String, ApiError> {
    match value {
        serde_json::Value::String(text) => Ok(text),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(Error::invalid(
            format!("parameters.{name}"),
            "must be text, a number or a boolean",
        )
        .into()),
    }
}

#[utoipa::path(post, path = "/templates/{name}/tasks", tag = "templates",
    summary = "Render a template with the parameters given and submit the task it makes (SubmitTemplate)",
    params(
        ("name" = String, Path, description = "the template"),
        ("tenant" = Option<String>, Query, description = "the tenant; the caller's first when absent"),
        ("Idempotency-Key" = Option<String>, Header, description = "a resubmit with the same key finds the first task"),
    ),
    request_body(content = RunBody, content_type = "application/json",
        description = "{\"parameters\": {\"repo\": \"/srv/app.git\", \"feature\": \"dark mode\"}}"),
    responses(
        (status = 201, description = "made", body = Submitted),
        (status = 200, description = "the key found an existing task", body = Submitted),
        (status = 404, description = "no such template; the message names those there are", body = ErrorBody),
        (status = 409, description = "the task asks for a plan (`plan: true`) and this control plane has no planner", body = ErrorBody),
        Refused))]
pub(super) async fn submit_template(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<RunQuery>,
    body: Result<String, StringRejection>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let body = text_body(body)?;
    let body: RunBody = if body.trim().is_empty() {
        RunBody::default()
    } else {
        json_body(Ok(body))?
    };
    let parameters = body
        .parameters
        .into_iter()
        .map(|(key, value)| Ok((key.clone(), parameter_text(&key, value)?)))
        .collect::<Result<_, ApiError>>()?;
    let request = SubmitTemplate {
        name,
        parameters,
        idempotency_key: idempotency_key(&headers)?,
        tenant: query.tenant,
        labels: Default::default(),
    };
    let answer = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.tasks.submit_template(r).await
    })
    .await?;
    Ok(submitted(answer))
}

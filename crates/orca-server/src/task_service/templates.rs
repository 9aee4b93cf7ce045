//! ListTemplates and SubmitTemplate: the task templates this control plane
//! offers (the built-in set and `--templates-dir`, read at start), and
//! submitting the task one renders, so every client (gRPC, the JSON API,
//! the console, the Python package) runs them without a copy of the files.

use std::collections::BTreeMap;
use std::path::Path;

use orca_core::template::{Template, TemplateFile, catalog};

use super::*;

/// The templates on offer, each loaded and checked.
#[derive(Debug, Default)]
pub struct Templates {
    loaded: Vec<(TemplateFile, Template)>,
}

impl Templates {
    /// The built-in set, and `dir`'s files, which replace built-ins of the
    /// same name. A template that does not load stops the start, naming
    /// its file: better than a refusal when someone runs it.
    pub fn load(dir: Option<&Path>) -> Result<Templates, Error> {
        let files = catalog(dir).map_err(|source| Error::Io {
            context: "--templates-dir".into(),
            source,
        })?;
        let loaded = files
            .into_iter()
            .map(|file| {
                let template = file.load().map_err(|e| Error::Templates(e.to_string()))?;
                Ok((file, template))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Templates { loaded })
    }

    fn find(&self, name: &str) -> Result<&Template, Error> {
        match self.loaded.iter().find(|(file, _)| file.name == name) {
            Some((_, template)) => Ok(template),
            None => {
                let names: Vec<&str> = self.loaded.iter().map(|(f, _)| f.name.as_str()).collect();
                Err(Error::NotFound(format!(
                    "template {name:?} (there are: {})",
                    names.join(", ")
                )))
            }
        }
    }
}

/// A parameter's value as text: a string as it is, anything else as JSON.
fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn to_proto(file: &TemplateFile, template: &Template) -> v1::TaskTemplate {
    v1::TaskTemplate {
        name: file.name.clone(),
        description: template.description.clone(),
        parameters: template
            .parameters
            .iter()
            .map(|(name, p)| v1::TemplateParameter {
                name: name.clone(),
                r#type: p.kind.name().into(),
                description: p.description.clone(),
                required: p.required,
                default_value: p.default.as_ref().map(text),
                allowed: p.allowed.iter().map(text).collect(),
            })
            .collect(),
        origin: file.origin.clone(),
        file: file.text.clone(),
    }
}

impl TaskApi {
    pub async fn list_templates(
        &self,
        request: Call<v1::ListTemplatesRequest>,
    ) -> Result<v1::ListTemplatesResponse, Error> {
        request.require(Action::ReadTasks)?;
        Ok(v1::ListTemplatesResponse {
            templates: self
                .templates
                .loaded
                .iter()
                .map(|(file, template)| to_proto(file, template))
                .collect(),
        })
    }

    pub async fn submit_template(
        &self,
        request: Call<v1::SubmitTemplateRequest>,
    ) -> Result<v1::SubmitTaskResponse, Error> {
        const ACTION: &str = "task.submit";
        let caller = self.permit(&request, Action::WriteTasks, ACTION)?;
        let v1::SubmitTemplateRequest {
            name,
            parameters,
            idempotency_key,
            tenant,
        } = request.into_message();
        let submitted = async {
            // In name order, so a refusal names the same parameter each time.
            let given: Vec<(String, String)> = parameters
                .into_iter()
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect();
            let spec = self.templates.find(&name)?.render(&given)?;
            let request = v1::SubmitTaskRequest {
                spec: Some(v1::TaskSpec::from(&spec)),
                idempotency_key,
                tenant,
            };
            self.submit(vec![request], false, &caller).await
        }
        .await;
        let mut responses = self.refusal_audited(&caller, ACTION, &name, submitted)?;
        let response = responses
            .pop()
            .ok_or_else(|| Error::Internal("no task was created".into()))?;
        Ok(response)
    }
}

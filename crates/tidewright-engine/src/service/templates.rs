//! ListTemplates and SubmitTemplate: the task templates this control plane
//! offers (the built-in set and `--templates-dir`, read at start), and
//! submitting the task one renders, so every client (gRPC, the JSON API,
//! the console, the Python package) runs them without a copy of the files.

use tidewright_core::template::{Template, TemplateFile};

use super::calls::{Submit, SubmitTemplate, Submitted};
use super::{Call, Tasks};
use crate::access::Action;
use crate::error::Error;

/// The templates on offer, each loaded and checked.
#[derive(Debug, Default)]
pub struct Templates {
    loaded: Vec<(TemplateFile, Template)>,
}

impl Templates {
    /// Templates as loaded, each file with what it holds.
    pub fn new(loaded: Vec<(TemplateFile, Template)>) -> Templates {
        Templates { loaded }
    }

    pub(super) fn find(&self, name: &str) -> Result<&Template, Error> {
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

impl Tasks {
    pub async fn list_templates(
        &self,
        call: Call<()>,
    ) -> Result<Vec<(TemplateFile, Template)>, Error> {
        call.require(Action::ReadTasks)?;
        Ok(self.cx.templates.loaded.clone())
    }

    /// The templates' names, descriptions and parameters, for what anyone
    /// may read: the A2A agent card lists them as its skills, as a service
    /// catalogue does. No task, nor anything a caller submitted, is in them.
    pub fn offered_templates(&self) -> Vec<Template> {
        self.cx
            .templates
            .loaded
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    pub async fn submit_template(&self, call: Call<SubmitTemplate>) -> Result<Submitted, Error> {
        const ACTION: &str = "task.submit";
        let caller = self.cx.permit_tasks(&call, Action::WriteTasks, ACTION)?;
        let SubmitTemplate {
            name,
            parameters,
            idempotency_key,
            tenant,
            labels,
        } = call.into_message();
        let submitted = async {
            // In name order, so a refusal names the same parameter each time.
            let given: Vec<(String, String)> = parameters.into_iter().collect();
            let mut spec = self.cx.templates.find(&name)?.render(&given)?;
            spec.labels.extend(labels);
            let request = Submit {
                spec: Some(spec),
                idempotency_key,
                tenant,
            };
            self.cx.submit(vec![request], false, &caller).await
        }
        .await;
        let mut submitted = self.cx.refusal_audited(&caller, ACTION, &name, submitted)?;
        submitted
            .pop()
            .ok_or_else(|| Error::Internal("no task was created".into()))
    }
}

//! `kind: crm` as a [`Kind`]: its URL, header and body templates compiled, and what `check`
//! shows of the request each sample event would send.

use std::sync::Arc;

use serde_json::Value;

use super::{CompiledRequest, CrmSettings, CrmTarget};
use crate::store::Job;
use crate::targets::Target;
use crate::targets::kind::{Kind, Preview, Start, keep, shorten};
use crate::templates::{TemplateError, Templates};

impl Kind for CrmSettings {
    fn name(&self) -> &'static str {
        "crm"
    }

    fn renders_event(&self) -> bool {
        true
    }

    fn summary(&self) -> String {
        format!("{} {}", self.method, self.url.text)
    }

    fn compile(&self, templates: &mut Templates, errors: &mut Vec<TemplateError>) -> Option<Start> {
        let url = keep(errors, templates.text(&self.url));
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            if let Some(id) = keep(errors, templates.text(value)) {
                headers.push((name.clone(), id));
            }
        }
        let body = self
            .body
            .as_ref()
            .and_then(|b| keep(errors, templates.body(b)));
        let request = CompiledRequest {
            method: self.method.clone(),
            url: url?,
            headers,
            body,
        };
        let auth = self.auth.clone();
        Some(Box::new(move |setup| {
            let target: Arc<dyn Target> = Arc::new(CrmTarget::try_new(
                &setup.name,
                request,
                setup.templates.clone(),
                auth,
                setup.timeout,
            )?);
            Ok(target)
        }))
    }
}

impl Preview for CrmTarget {
    fn preview(&self, job: &Job) -> Result<String, String> {
        let rendered = self.render(job)?;
        if url::Url::parse(rendered.url.trim()).is_err() {
            return Err(format!("the url renders as {:?}, not a URL", rendered.url));
        }
        let empty = empty_leaves(rendered.body.as_ref());
        let note = if empty.is_empty() {
            String::new()
        } else {
            format!("; empty fields: {}", empty.join(", "))
        };
        Ok(format!("ok, {}{note}", shorten(&rendered.url)))
    }
}

/// Dotted paths of the string leaves that rendered empty.
fn empty_leaves(body: Option<&Value>) -> Vec<String> {
    fn walk(v: &Value, path: String, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.trim().is_empty() => out.push(if path.is_empty() {
                "(body)".into()
            } else {
                path
            }),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, x)| walk(x, format!("{path}[{i}]"), out)),
            Value::Object(map) => map.iter().for_each(|(k, x)| {
                walk(
                    x,
                    if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    },
                    out,
                )
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(b) = body {
        walk(b, String::new(), &mut out);
    }
    out
}

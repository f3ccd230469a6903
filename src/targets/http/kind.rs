//! `kind: http` as a [`Kind`]: nothing to compile (the body goes out as received), so nothing
//! to preview either.

use std::sync::Arc;

use super::{HttpSettings, HttpTarget};
use crate::targets::Target;
use crate::targets::kind::{Kind, Start};
use crate::templates::{TemplateError, Templates};

impl Kind for HttpSettings {
    fn name(&self) -> &'static str {
        "http"
    }

    fn renders_event(&self) -> bool {
        false
    }

    fn summary(&self) -> String {
        self.url.to_string()
    }

    fn compile(&self, _: &mut Templates, _: &mut Vec<TemplateError>) -> Option<Start> {
        let settings = self.clone();
        Some(Box::new(move |setup| {
            let target: Arc<dyn Target> = Arc::new(HttpTarget::try_new(settings, setup.timeout)?);
            Ok(target)
        }))
    }
}

//! Kubernetes: sidecar injection ([`inject`]), its two front ends — the
//! `narrowgate inject` command over manifests ([`inject_documents`]) and
//! the mutating admission webhook ([`webhook`]) — and the webhook's
//! certificates ([`certs`]).

pub mod certs;
pub mod inject;
pub mod webhook;

use serde_json::Value;

pub use inject::{InjectError, Options, Outcome, SidecarMode};

/// Where a workload kind keeps the pod it runs, as a JSON pointer into
/// the object (`""` for a pod itself); `None` for kinds that run no pod.
pub fn pod_template(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
            Some("/spec/template")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// A document `narrowgate inject` could not inject.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("document {index}: not YAML: {message}")]
    Yaml { index: usize, message: String },
    #[error("document {index} ({kind} {name}): {error}")]
    Inject { index: usize, kind: String, name: String, error: InjectError },
    #[error("document {index} ({kind} {name}): the patch does not apply: {message}")]
    Patch { index: usize, kind: String, name: String, message: String },
}

/// Inject every workload in a multi-document YAML text: Pods,
/// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs
/// (and the items of a `List`) get the sidecar; every other document, and
/// every workload left as it was, is written back exactly as it came.
pub fn inject_documents(text: &str, options: &Options) -> Result<String, DocumentError> {
    let mut out = String::with_capacity(text.len() * 2);
    for (index, doc) in split_documents(text).into_iter().enumerate() {
        out.push_str(doc.separator);
        let value: Value = match serde_saphyr::from_str_with_options(doc.body, yaml_options()) {
            Ok(v) => v,
            Err(e) => return Err(DocumentError::Yaml { index, message: e.to_string() }),
        };
        let mut patched = value.clone();
        let changed = inject_object(&mut patched, index, options)?;
        if changed {
            let yaml =
                serde_saphyr::to_string(&patched).map_err(|e| DocumentError::Yaml { index, message: e.to_string() })?;
            out.push_str(&yaml);
        } else {
            out.push_str(doc.body);
        }
    }
    Ok(out)
}

/// Inject `doc` in place (a workload, or each item of a `List`); whether
/// anything changed.
fn inject_object(doc: &mut Value, index: usize, options: &Options) -> Result<bool, DocumentError> {
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    if kind == "List" {
        let mut changed = false;
        if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
            for item in items {
                changed |= inject_object(item, index, options)?;
            }
        }
        return Ok(changed);
    }
    let Some(base) = pod_template(&kind) else { return Ok(false) };
    let name = doc["metadata"]["name"].as_str().unwrap_or("(unnamed)").to_string();
    let Some(template) = doc.pointer(base) else { return Ok(false) };
    let ops = inject::pod(template, base, options)
        .map_err(|error| DocumentError::Inject { index, kind: kind.clone(), name: name.clone(), error })?
        .ops();
    if ops.is_empty() {
        return Ok(false);
    }
    json_patch::patch(doc, &ops).map_err(|e| DocumentError::Patch { index, kind, name, message: e.to_string() })?;
    Ok(true)
}

/// Read YAML as kubectl does (YAML 1.1 numbers: `0400` is octal).
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    options
}

/// One document of a YAML stream: the `---` line before it (empty for the
/// first when there is none) and its text.
struct Document<'a> {
    separator: &'a str,
    body: &'a str,
}

/// Split a YAML stream at its `---` lines (a `---` alone on a line, or
/// followed by a comment). Block scalars are indented, so such a line at
/// the start of a line is always a document marker.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut separator = "";
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let rest = line.strip_prefix("---").map(str::trim);
        if rest.is_some_and(|r| r.is_empty() || r.starts_with('#')) {
            if at > start || !separator.is_empty() {
                docs.push(Document { separator, body: &text[start..at] });
            }
            separator = &text[at..at + line.len()];
            start = at + line.len();
        }
        at += line.len();
    }
    if start < text.len() || !separator.is_empty() || docs.is_empty() {
        docs.push(Document { separator, body: &text[start..] });
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_their_markers_and_join_back_exactly() {
        for text in [
            "",
            "a: 1\n",
            "---\na: 1\n",
            "a: 1\n---\nb: 2\n",
            "--- # first\na: 1\n---\n---\nb: |\n  ---\n  x\n",
            "a: 1\n---",
        ] {
            let joined: String = split_documents(text).iter().map(|d| format!("{}{}", d.separator, d.body)).collect();
            assert_eq!(joined, text);
        }
        let docs = split_documents("a: 1\n---\nb: |\n  ---\n");
        assert_eq!(docs.len(), 2, "an indented --- inside a block scalar is not a marker");
    }

    #[test]
    fn every_workload_kind_names_its_pod_template() {
        for (kind, at) in [
            ("Pod", ""),
            ("Deployment", "/spec/template"),
            ("StatefulSet", "/spec/template"),
            ("DaemonSet", "/spec/template"),
            ("ReplicaSet", "/spec/template"),
            ("Job", "/spec/template"),
            ("CronJob", "/spec/jobTemplate/spec/template"),
        ] {
            assert_eq!(pod_template(kind), Some(at), "{kind}");
        }
        for kind in ["Service", "ConfigMap", "Secret", "Namespace", ""] {
            assert_eq!(pod_template(kind), None, "{kind}");
        }
    }
}

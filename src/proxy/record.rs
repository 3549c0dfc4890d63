//! Phase 8: report a decision — one metrics update, one log line in the
//! request's span, and the audit event when the audit log is on (shared
//! pointers and numbers; the audit writer makes text of them off the
//! request path). A gRPC call whose status comes in its trailers is
//! counted by `grpc-status`, and audited, when it ends (`grpc::Call`).

use std::sync::Arc;

use http::Response;
use http_body_util::Either;

use super::{Body, ConnInfo, Decision, Gateway, Outcome, Verdict, grpc};
use crate::reason::Reason;
use crate::runtime::Snapshot;

impl Gateway {
    /// Report a decision: one metrics update, one log line, and the audit
    /// event when the audit log is on.
    pub(super) fn record(
        &self,
        snap: &Arc<Snapshot>,
        decision: &Decision,
        outcome: &Outcome,
        conn: &ConnInfo,
        resp: &mut Response<Body>,
    ) {
        let elapsed = outcome.start.elapsed();
        let Outcome { reason, status, failure, request_id, .. } = outcome;
        let reason = *reason;
        let app = decision.app.and_then(|a| snap.apps.get(a));
        let counters = decision.route.and_then(|r| snap.route_counters.get(r));
        self.metrics.observe(reason, counters, elapsed.as_secs_f64());
        if let Some(would) = decision.would_deny() {
            self.metrics.would_deny(would, app.map_or("none", |a| &*a.name));
        }
        let event = snap.audit.then(|| self.audit_event(decision, outcome, conn, elapsed, snap));
        let grpc = outcome.grpc.then(|| self.metrics.grpc_counters(counters)).flatten();
        if outcome.grpc && (grpc.is_some() || event.is_some()) {
            // A gRPC call is reported with the status it ends with: known
            // now if the head tells it, else when its trailers come.
            // (With nothing to count or audit, nothing is carried.)
            let call = grpc::Call { counters: grpc.cloned(), audit: event.map(|e| (snap.audit_log.clone(), e)) };
            match (grpc::status_of_head(resp.status(), resp.headers()), resp.body_mut()) {
                (None, Either::Left(body)) => body.report(call),
                (code, _) => call.end(code.unwrap_or(grpc::INTERNAL)),
            }
        } else if let Some(e) = event {
            snap.audit_log.record(crate::audit::Event::Decision(e));
        }
        if let Some(trace) = outcome.trace.as_ref().filter(|t| t.sampled) {
            self.trace(snap, decision, outcome, trace);
        }
        let route = decision.route.and_then(|r| snap.routes.get(r)).map_or("-", |r| &*r.template);
        let request_id = request_id.to_str().unwrap_or("-");
        let trace_id = outcome.trace.as_ref().map(|t| tracing::field::display(t.trace_id));
        // The verified client certificate's SPIFFE id, else its subject.
        let client_cert = conn.client.as_deref().map(|c| c.spiffe.as_deref().unwrap_or(&c.subject));
        if let Some(would) = decision.would_deny() {
            tracing::info!(
                would_deny = would.code(),
                route,
                request_id,
                trace_id,
                client_cert,
                "shadow: forwarded a request the policy denies"
            );
        } else if reason.is_allow() {
            tracing::debug!(
                reason = reason.code(),
                route,
                rule.id = decision.rule_id(),
                request_id,
                trace_id,
                client_cert,
                "allowed"
            );
        } else if let Some(f) = failure.as_ref() {
            tracing::warn!(
                reason = reason.code(),
                route,
                request_id,
                trace_id,
                upstream = f.upstream.as_str(),
                upstream_name = &*f.name,
                error = f.cause.as_str(),
                "upstream failed"
            );
        } else {
            tracing::info!(
                reason = reason.code(),
                route,
                request_id,
                trace_id,
                client_cert,
                status = status.as_u16(),
                "denied"
            );
        }
    }

    /// A sampled request's spans: the request's, its token's verification
    /// on a cache miss, its upstream call. What they hold is closed, as
    /// the audit event's is: ids, names, codes and the route's template.
    fn trace(&self, snap: &Snapshot, decision: &Decision, outcome: &Outcome, trace: &crate::trace::Trace) {
        use opentelemetry::KeyValue;
        use opentelemetry::trace::SpanKind;
        let Some(tracing) = &self.runtime.shared().tracing else { return };
        let mut attributes = Vec::with_capacity(12);
        attributes.push(KeyValue::new("http.request.method", crate::trace::method_name(&outcome.method)));
        attributes.push(KeyValue::new("http.response.status_code", i64::from(outcome.status.as_u16())));
        if let Some(route) = decision.route.and_then(|r| snap.routes.get(r)) {
            attributes.push(KeyValue::new("http.route", route.template.to_string()));
        }
        let verdict = match &decision.verdict {
            Verdict::Allow { .. } => "allow",
            Verdict::Shadow { .. } => "shadow",
            Verdict::Deny { .. } => "deny",
            Verdict::Limited(_) => "limited",
        };
        attributes.push(KeyValue::new("narrowgate.decision", verdict));
        attributes.push(KeyValue::new("narrowgate.reason", decision.would_deny().unwrap_or(outcome.reason).code()));
        if let Some(app) = decision.app.and_then(|a| snap.apps.get(a)) {
            attributes.push(KeyValue::new("narrowgate.application", app.name.to_string()));
        }
        if let Some(g) = &decision.grant {
            attributes.push(KeyValue::new("narrowgate.token_id", g.token_id.to_string()));
        }
        if let Some(rule) = decision.rule_id() {
            attributes.push(KeyValue::new("narrowgate.rule_id", rule.to_owned()));
        }
        if let Ok(id) = outcome.request_id.to_str() {
            attributes.push(KeyValue::new("narrowgate.request_id", id.to_owned()));
        }
        if outcome.grpc {
            attributes.push(KeyValue::new("rpc.system", "grpc"));
        }
        // A server span is in error for what the server failed at (5xx),
        // not for what it refused.
        let failed = outcome.status.is_server_error().then(|| outcome.reason.code());
        if let Some(span) = trace.request_span(outcome.start, attributes, failed) {
            tracing.export(span);
        }
        if let Some(v) = decision.verified {
            let refused = v.refused.map(Reason::code);
            let attributes = vec![KeyValue::new("narrowgate.reason", refused.unwrap_or(Reason::Allowed.code()))];
            let span =
                trace.child(tracing.span_id(), "verify token", SpanKind::Internal, (v.from, v.to), attributes, refused);
            span.into_iter().for_each(|s| tracing.export(s));
        }
        if let Some(call) = &outcome.upstream_call {
            let mut attributes = vec![KeyValue::new("narrowgate.upstream", call.upstream.to_string())];
            let failed = outcome.failure.as_ref().map(|f| f.kind.label());
            if failed.is_none() {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(outcome.status.as_u16())));
            }
            let span = trace.child(call.span, "upstream", SpanKind::Client, (call.from, call.to), attributes, failed);
            span.into_iter().for_each(|s| tracing.export(s));
        }
    }

    /// A decision as an audit event: shared pointers and numbers; the audit
    /// writer makes text of it off the request path.
    fn audit_event(
        &self,
        decision: &Decision,
        outcome: &Outcome,
        conn: &ConnInfo,
        elapsed: std::time::Duration,
        snap: &Snapshot,
    ) -> Box<crate::audit::DecisionEvent> {
        let (allowed, denial) = match &decision.verdict {
            Verdict::Allow { by, .. } => (*by, None),
            Verdict::Shadow { denial, .. } | Verdict::Deny { denial, .. } => (None, denial.clone()),
            Verdict::Limited(_) => (None, None),
        };
        Box::new(crate::audit::DecisionEvent {
            at: self.runtime.shared().clock.system_time(),
            request_id: outcome.request_id.clone(),
            trace_id: outcome.trace.as_ref().map(|t| t.trace_id),
            client: conn.peer,
            client_certificate: conn.client.clone(),
            method: outcome.method.clone(),
            labels: snap.audit_labels.clone(),
            route: decision.route,
            resource_id: decision.resource_id.clone(),
            // A shadowed request is audited with what it would be denied for.
            reason: decision.would_deny().unwrap_or(outcome.reason),
            shadow: decision.would_deny().is_some(),
            allowed,
            denial,
            grant: decision.grant.clone(),
            status: outcome.status.as_u16(),
            forwarded: decision.is_allow() && outcome.failure.is_none(),
            grpc_status: None,
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        })
    }
}

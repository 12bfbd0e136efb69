//! The lab RPCs' conversions: `ListLabs`, `GetLab` and `RunLab` call the same
//! [`crate::service::labs`] methods as REST; these turn the replies into
//! messages (and a `RunLabRequest` into the service's request). Kept apart
//! from [`super::convert`] so the lab API reads in one place.

use super::pb;
use crate::service::Error;
use crate::service::labs::{
    LabCheck, LabInfo, LabList, LabRunResult, LabVariantInfo, LabVariantRun, RunLab, RunLabToml,
};

/// What a `RunLabRequest` asks for: a built-in lab by name, or lab text.
#[derive(Debug)]
pub enum LabRequest {
    /// `name` set: a built-in lab.
    Builtin(String, RunLab),
    /// `toml` set: a lab file's text.
    Toml(RunLabToml),
}

impl TryFrom<pb::RunLabRequest> for LabRequest {
    type Error = Error;

    fn try_from(m: pb::RunLabRequest) -> Result<LabRequest, Error> {
        let pb::RunLabRequest { name, variant, session_name, end, toml } = m;
        match (name.is_empty(), toml) {
            (false, None) => Ok(LabRequest::Builtin(name, RunLab { variant, name: session_name, end })),
            (true, Some(toml)) => Ok(LabRequest::Toml(RunLabToml { toml, variant, name: session_name, end })),
            (false, Some(_)) => Err(Error::invalid("toml", "give either name or toml, not both")),
            (true, None) => Err(Error::invalid("name", "name a built-in lab (or give its text in toml)")),
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<LabVariantInfo> for pb::LabVariant {
    fn from(v: LabVariantInfo) -> pb::LabVariant {
        pb::LabVariant {
            name: v.name,
            description: v.description,
            steps: count(v.steps),
            expectations: count(v.expectations),
            profile: Some(v.profile.into()),
        }
    }
}

impl From<LabInfo> for pb::Lab {
    fn from(l: LabInfo) -> pb::Lab {
        pb::Lab {
            name: l.name,
            title: l.title,
            explanation: l.explanation,
            variants: l.variants.into_iter().map(Into::into).collect(),
            toml: l.toml,
        }
    }
}

impl From<LabList> for pb::ListLabsResponse {
    fn from(l: LabList) -> pb::ListLabsResponse {
        pb::ListLabsResponse { labs: l.labs.into_iter().map(Into::into).collect() }
    }
}

impl From<LabCheck> for pb::LabCheck {
    fn from(c: LabCheck) -> pb::LabCheck {
        pb::LabCheck {
            step: count(c.step),
            line: count(c.line),
            kind: c.kind,
            what: c.what,
            passed: c.passed,
            expected: c.expected,
            got: c.got,
            t_ms: c.t_ms,
            message: c.message,
        }
    }
}

impl From<LabVariantRun> for pb::LabVariantRun {
    fn from(v: LabVariantRun) -> pb::LabVariantRun {
        pb::LabVariantRun {
            variant: v.variant,
            description: v.description,
            session_id: v.session_id,
            passed: v.passed,
            checks: v.checks.into_iter().map(Into::into).collect(),
            error: v.error,
            ladder: v.ladder,
            events: v.events,
            now_ns: v.now_ns,
            stopped_by: super::convert::stop_reason_to_pb(v.stopped_by),
            limit: v.limit.map(Into::into),
        }
    }
}

impl From<LabRunResult> for pb::RunLabResponse {
    fn from(r: LabRunResult) -> pb::RunLabResponse {
        pb::RunLabResponse {
            lab: r.lab,
            title: r.title,
            passed: r.passed,
            session_id: r.session_id,
            variant: r.variant,
            checks: r.checks.into_iter().map(Into::into).collect(),
            error: r.error,
            ladder: r.ladder,
            variants: r.variants.into_iter().map(Into::into).collect(),
            stopped_by: super::convert::stop_reason_to_pb(r.stopped_by),
            limit: r.limit.map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Request, Status};

    use super::*;
    use crate::api::grpc::GrpcLab;
    use crate::api::grpc::pb::lab_service_server::LabService as _;
    use crate::service::{LabService, Limits};
    use crate::store::Store;

    async fn grpc() -> (GrpcLab, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("lab.db")).await.expect("open store");
        (GrpcLab::new(LabService::new(store, Limits::default()).await.expect("service")), dir)
    }

    #[test]
    fn run_request_wants_exactly_one_of_name_and_toml() {
        let by_name = pb::RunLabRequest { name: "x".into(), variant: Some("v".into()), ..Default::default() };
        assert!(matches!(
            LabRequest::try_from(by_name),
            Ok(LabRequest::Builtin(name, RunLab { variant: Some(v), .. })) if name == "x" && v == "v"
        ));
        let by_text = pb::RunLabRequest { toml: Some("t".into()), end: Some(true), ..Default::default() };
        assert!(matches!(LabRequest::try_from(by_text), Ok(LabRequest::Toml(RunLabToml { end: Some(true), .. }))));
        let both = pb::RunLabRequest { name: "x".into(), toml: Some("t".into()), ..Default::default() };
        let status = Status::from(LabRequest::try_from(both).unwrap_err());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("toml: "), "{}", status.message());
        let status = Status::from(LabRequest::try_from(pb::RunLabRequest::default()).unwrap_err());
        assert!(status.message().starts_with("name: "), "{}", status.message());
    }

    #[tokio::test]
    async fn the_rpcs_list_show_and_run_labs() {
        let (lab, _dir) = grpc().await;
        let list = lab.list_labs(Request::new(pb::ListLabsRequest {})).await.expect("list").into_inner();
        assert_eq!(list.labs.len(), crate::lab::builtin().len());
        assert!(list.labs.iter().all(|l| l.toml.is_none() && !l.variants.is_empty()));
        let one = lab.get_lab(Request::new(pb::LabRef { name: "why-not-two-way".into() })).await.expect("get");
        let one = one.into_inner();
        assert!(one.toml.is_some_and(|t| t.contains("[[variant]]")));
        let two_way = one.variants[1].profile.clone().expect("a profile");
        assert_eq!(two_way.handshake(), pb::Handshake::TwoWay, "{two_way:?}");
        let missing = lab.get_lab(Request::new(pb::LabRef { name: "nope".into() })).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        assert_eq!(missing.message(), "lab nope not found");

        let req = pb::RunLabRequest { name: "why-not-two-way".into(), ..Default::default() };
        let run = lab.run_lab(Request::new(req)).await.expect("run").into_inner();
        assert!(run.passed, "{run:?}");
        assert_eq!(run.variants.len(), 2);
        assert_eq!(run.session_id, run.variants[0].session_id);
        assert!(run.variants.iter().all(|v| v.passed && !v.checks.is_empty() && v.events > 0));
        let bad = pb::RunLabRequest { name: "why-not-two-way".into(), variant: Some("x".into()), ..Default::default() };
        let status = lab.run_lab(Request::new(bad)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("variant: "), "{}", status.message());
        let text = pb::RunLabRequest { toml: Some("title = 1\n".into()), ..Default::default() };
        let status = lab.run_lab(Request::new(text)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("toml: line 1, column "), "{}", status.message());
    }
}

//! `POST /v1/diff`: compares the alerts of two deployments or alert topics.
//!
//! ```text
//! POST /v1/diff   body: {"a": "...", "b": "...", "window": 0, "from": N?, "to": N?}
//!                 → DiffReport (per source topic/partition: only_a, only_b, both, samples)
//! ```
//! `a` and `b` each name a deployment (its alert topic, only the records it
//! wrote) or, when no deployment has that name, an alert topic read whole.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use vigil_api::ErrorKind;
use vigil_engine::diff::{self, DiffRequest, Side};

use super::error::{json_response, ApiError};
use super::extract::{decode, Body, NoQuery, Params};
use super::AdminState;

/// Serves `POST /v1/diff`.
pub async fn diff(
    State(s): State<AdminState>,
    _: Params<NoQuery>,
    Body(raw): Body,
) -> Result<Response, ApiError> {
    let dr: DiffRequest = decode(&raw, "diff request")?;
    dr.check()
        .map_err(|e| ApiError::invalid(format!("invalid diff request: {e}")))?;
    let (a, b) = (side(&s, &dr.a).await, side(&s, &dr.b).await);
    let topic = |side: &Side, name: &str| {
        s.log.topic(&side.topic).ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                format!("{name:?} is neither a deployment nor a topic"),
            )
        })
    };
    let (at, bt) = (topic(&a, &dr.a)?, topic(&b, &dr.b)?);
    let covered = match (&a.covered, &b.covered) {
        (Some(ca), Some(cb)) => Some(diff::intersect(ca, cb)),
        _ => None,
    };
    let report = diff::diff(
        &s.log,
        &at,
        a.deployment.as_deref(),
        &bt,
        b.deployment.as_deref(),
        covered.as_ref(),
        &dr,
    )
    .await?;
    Ok(json_response(StatusCode::OK, &report))
}

/// A deployment's alert topic (only its records) or else the topic `name`.
async fn side(s: &AdminState, name: &str) -> Side {
    // Any failure to find a deployment by that name (not there, or not
    // readable) falls back to reading `name` as a topic, as before.
    let found = s.detectors.status(name).await.ok().map(|st| {
        let covered = st
            .partitions
            .iter()
            .map(|p| ((p.topic.clone(), p.partition), (p.start, p.offset)))
            .collect();
        (st.output, covered)
    });
    diff::resolve(name, |_| found)
}

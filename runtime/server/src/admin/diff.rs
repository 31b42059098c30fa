//! `POST /v1/diff`: compares the alerts of two deployments or alert topics.
//!
//! ```text
//! POST /v1/diff   body: {"a": "...", "b": "...", "window": 0, "from": N?, "to": N?}
//!                 → DiffReport (per source topic/partition: only_a, only_b, both, samples)
//! ```
//! `a` and `b` each name a deployment (its alert topic, only the records it
//! wrote) or, when no deployment has that name, an alert topic read whole.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::detectors::{error, fail, json, parse};
use super::Reply;
use crate::broker::Broker;
use vigil_engine::diff::{self, DiffRequest, Side};

/// Serves `POST /v1/diff`.
pub(super) async fn route(broker: &Broker, req: Request<Incoming>) -> Reply {
    if req.method() != hyper::Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST /v1/diff with {\"a\": ..., \"b\": ...}",
        );
    }
    let dr: DiffRequest = match parse(req, "diff request").await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if let Err(e) = dr.check() {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("invalid diff request: {e}"),
        );
    }
    let (a, b) = (side(broker, &dr.a).await, side(broker, &dr.b).await);
    let topic = |s: &Side, name: &str| {
        broker.log.topic(&s.topic).ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                &format!("{name:?} is neither a deployment nor a topic"),
            )
        })
    };
    let (at, bt) = match (topic(&a, &dr.a), topic(&b, &dr.b)) {
        (Ok(at), Ok(bt)) => (at, bt),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match diff::diff(
        &broker.log,
        &at,
        a.deployment.as_deref(),
        &bt,
        b.deployment.as_deref(),
        match (&a.covered, &b.covered) {
            (Some(ca), Some(cb)) => Some(diff::intersect(ca, cb)),
            _ => None,
        }
        .as_ref(),
        &dr,
    )
    .await
    {
        Ok(report) => json(StatusCode::OK, &report),
        Err(e) => fail(e),
    }
}

/// A deployment's alert topic (only its records) or else the topic `name`.
async fn side(broker: &Broker, name: &str) -> Side {
    let found = broker.detectors.status(name).await.ok().map(|s| {
        let covered = s
            .partitions
            .iter()
            .map(|p| ((p.topic.clone(), p.partition), (p.start, p.offset)))
            .collect();
        (s.output, covered)
    });
    diff::resolve(name, |_| found)
}

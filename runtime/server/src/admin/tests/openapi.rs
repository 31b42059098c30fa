//! `/openapi.json`: served, and every operation it describes is routed.

use axum::http::{Method, StatusCode};

use super::Harness;

#[tokio::test]
async fn the_description_is_served_and_every_route_in_it_exists() {
    let h = Harness::new().await;
    let a = h.get("/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc,
        vigil_api::openapi::document(),
        "the server serves the crate's document"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            operations += 1;
            // Parameters get a value no deployment has; a body that does not
            // decode is fine: the route answering at all is what is checked.
            let uri = path.replace("{name}", "no-such").replace("{id}", "no-such");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let a = h.call(m, &uri, "").await;
            assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if a.status == StatusCode::NOT_FOUND {
                let e = a.error();
                assert!(
                    !e.error.contains("no such endpoint"),
                    "{method} {path}: {}",
                    e.error
                );
            }
        }
    }
    assert_eq!(operations, vigil_api::openapi::routes().len());
    // The logs route in particular (added with the description).
    assert!(paths["/v1/deployments/{name}/logs"]["get"]["parameters"].is_array());
}

/// The other direction: every path the admin router serves (read from its
/// source, so a new route cannot be added without it) is described, apart
/// from the console's page and assets, which are not API.
#[test]
fn every_routed_path_is_described() {
    let source = include_str!("../mod.rs");
    let mut routed = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find(".route(") {
        rest = rest[i + ".route(".len()..].trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            if let Some(end) = quoted.find('"') {
                routed.push(quoted[..end].to_string());
            }
        }
    }
    // The router has these today: the scan cannot pass by finding nothing.
    for known in ["/healthz", "/v1/deployments", "/v1/cluster", "/v1/overview"] {
        assert!(
            routed.iter().any(|p| p == known),
            "{known} not found in {routed:?}"
        );
    }
    let described: Vec<&str> = vigil_api::openapi::routes()
        .iter()
        .map(|r| r.path)
        .collect();
    let missing: Vec<&String> = routed
        .iter()
        .filter(|p| !p.starts_with("/console") && !described.contains(&p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "routed but not in /openapi.json: {missing:?}"
    );
}

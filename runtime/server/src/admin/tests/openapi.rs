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

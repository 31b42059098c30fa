//! The #[detector] attribute macro for vigil detectors

//! vigil detector plugin: threshold-rules

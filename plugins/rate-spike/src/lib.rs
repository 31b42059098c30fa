//! vigil detector plugin: rate-spike

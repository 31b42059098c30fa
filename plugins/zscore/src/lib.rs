//! vigil detector plugin: zscore

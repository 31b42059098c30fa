//! vigil detector plugin: seasonal

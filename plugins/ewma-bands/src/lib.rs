//! vigil detector plugin: ewma-bands

//! Guest SDK for vigil detectors: the Detector trait, Arrow batch access, alerts, state, streaming building blocks

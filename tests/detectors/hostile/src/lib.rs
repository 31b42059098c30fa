//! A deliberately misbehaving detector (trap, endless loop, memory growth, deep recursion, alert flood) for the host's isolation tests

"""The Faust stream processors: one app, agents per domain, state in Faust tables."""

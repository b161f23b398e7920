"""xAPI statements: canonical form, time handling, (later) full validation."""

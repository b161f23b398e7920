"""ClickHouse contract: the access Protocol, DDL as versioned migrations, the DDL renderer."""

"""Read views: current analytics statements, and the Aspects/Ralph ``xapi_events_all`` layout."""

from . import Migration

VOIDED_VERB = "http://adlnet.gov/expapi/verbs/voided"

MIGRATION = Migration(
    id="0004_views",
    forwards=(
        # What most research questions want: one row per statement (FINAL), without
        # statements that were voided and without the voiding statements themselves
        # (xAPI Data §2.3.2: a voided statement must not be taken into account).
        """
        CREATE VIEW IF NOT EXISTS {db}.statements_current AS
        SELECT * FROM {db}.statements FINAL
        WHERE voided = 0
          AND NOT (verb_id = '"""
        + VOIDED_VERB
        + """' AND object_type = 'StatementRef')
        """,
        # Tools written for Open edX Aspects / Ralph's ClickHouse backend read
        # xapi_events_all(event_id UUID, emission_time DateTime64(6), event String).
        # It exposes the raw JSON (names, mail addresses): never granted to researchers.
        """
        CREATE VIEW IF NOT EXISTS {db}.xapi_events_all AS
        SELECT
            statement_id AS event_id,
            CAST(timestamp AS DateTime64(6, 'UTC')) AS emission_time,
            raw AS event
        FROM {db}.statements_raw FINAL
        """,
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.xapi_events_all",
        "DROP TABLE IF EXISTS {db}.statements_current",
    ),
)

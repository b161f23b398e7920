"""GET /activities answers the Activity Object as the school's statements define it (ClickHouse)."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import wait_for
from tests.unit.gateway.harness import LiveGateway, statement


@pytest.mark.kafka
def test_xapi_comm_2_5_activity_definitions_merged_across_statements_per_school(settings):
    with LiveGateway(settings, ["a", "b"]) as gw:
        activity = f"http://www.example.com/verify/complete/{uuid.uuid4().hex[:10]}"
        base = f"http://127.0.0.1:{gw.port}/xapi/activities"
        english = statement(object={"objectType": "Activity", "id": activity, "definition": {
            "name": {"en-US": "example meeting"}, "type": "http://adlnet.gov/expapi/activities/meeting"}})  # fmt: skip
        french = statement(object={"objectType": "Activity", "id": activity,
                                   "definition": {"name": {"fr-FR": "réunion"}}})  # fmt: skip
        # Named only as a context activity by school b: b sees that definition, not a's.
        other = statement(context={"contextActivities": {"parent": [
            {"id": activity, "definition": {"description": {"en-US": "school b's view"}}}]}})  # fmt: skip
        # Kafka producers take a while to be ready on a busy machine: wait until statements are accepted.
        wait_for(lambda: gw.post(statement(), key="a").status_code == 200, 180, "the gateway to accept statements")
        r = gw.post([english, french], key="a")
        assert r.status_code == 200, r.text
        assert gw.post(other, key="b").status_code == 200
        for sid in r.json():
            assert gw.wait_readable("a", sid, timeout=120).status_code == 200

        def definition(school: str):
            got = gw.http.get(base, params={"activityId": activity}, headers=gw.headers(school))
            assert got.status_code == 200, got.text
            return got.json()

        # Readable by id may come before ClickHouse has it (read-your-writes): wait for both languages.
        wait_for(lambda: len(definition("a").get("definition", {}).get("name", {})) == 2, 90,
                 "both statements' definitions in ClickHouse")  # fmt: skip
        a = definition("a")
        assert a == {"objectType": "Activity", "id": activity, "definition": {
            "name": {"en-US": "example meeting", "fr-FR": "réunion"},
            "type": "http://adlnet.gov/expapi/activities/meeting"}}  # fmt: skip
        b = wait_for(lambda: definition("b").get("definition"), 60, "school b's statement in ClickHouse")
        assert b == {"description": {"en-US": "school b's view"}}
        # Never seen: still an Activity Object (Communication §2.5.s2.b1).
        unknown = gw.http.get(base, params={"activityId": activity + "/never"}, headers=gw.headers("a"))
        assert unknown.json() == {"objectType": "Activity", "id": activity + "/never"}

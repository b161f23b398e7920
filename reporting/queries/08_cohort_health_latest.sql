-- Each cohort's most recent health snapshot (the row with the latest event time; argMax
-- reads the latest version of that row) and whether a disengagement alert is open now.
-- Parameters: school.
SELECT
    h.course,
    h.cohort,
    h.latest_at AS at,
    h.learners,
    h.disengaged,
    h.share,
    ifNull(a.open_alerts, 0) AS open_alerts
FROM (
    SELECT course, cohort, max(at) AS latest_at,
           argMax(learners, (at, version)) AS learners,
           argMax(disengaged, (at, version)) AS disengaged,
           argMax(share, (at, version)) AS share
    FROM {db}.cohort_health
    WHERE school = {school:String}
    GROUP BY course, cohort
) AS h
LEFT JOIN (
    -- an episode is open when its latest state is "fired"
    SELECT course, cohort, countIf(state = 'fired') AS open_alerts
    FROM (
        SELECT course, cohort, alert_id, argMax(state, version) AS state
        FROM {db}.alerts
        WHERE school = {school:String}
        GROUP BY course, cohort, alert_id
    )
    GROUP BY course, cohort
) AS a ON a.course = h.course AND a.cohort = h.cohort
ORDER BY h.course, h.cohort

-- Disengagement alert episodes: when each fired, when (if) it resolved, and the share of
-- disengaged learners when it fired. One row per episode (alert_id).
-- Parameters: school.
SELECT
    course,
    cohort,
    alert_id,
    min(fired_at) AS fired_at,
    maxIf(at, state = 'resolved') AS resolved_at,
    argMax(state, version) AS current_state,
    maxIf(share, state = 'fired') AS share_when_fired,
    maxIf(learners, state = 'fired') AS cohort_learners
FROM {db}.alerts FINAL
WHERE school = {school:String}
GROUP BY course, cohort, alert_id
ORDER BY fired_at, alert_id

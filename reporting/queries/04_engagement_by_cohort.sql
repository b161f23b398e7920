-- Daily engagement per cohort: learners with activity, sessions started, and active time
-- (total and median per active learner, in minutes). `engagement` holds one row per
-- learner, course, grain and period, replaced by newer versions: FINAL reads the latest.
-- Definitions (sessions, active time): reporting/README.md.
-- Parameters: school, from (Date), to (Date, inclusive).
SELECT
    course,
    cohort,
    toDate(period_start) AS day,
    count() AS active_learners,
    sum(sessions) AS sessions,
    round(sum(active_ms) / 60000, 1) AS active_minutes,
    round(quantileExact(0.5)(active_ms) / 60000, 1) AS median_active_minutes
FROM {db}.engagement FINAL
WHERE school = {school:String} AND grain = 'day'
  AND toDate(period_start) >= {from:Date} AND toDate(period_start) <= {to:Date}
GROUP BY course, cohort, day
ORDER BY course, cohort, day

-- Each learner's weekly active minutes in each course (pseudonymous learner ids), the
-- basis of trajectory and dropout studies. Latest versions via FINAL.
-- Parameters: school, from (Date), to (Date, inclusive).
SELECT
    course,
    learner,
    toMonday(toDate(period_start)) AS week,
    sum(sessions) AS sessions,
    round(sum(active_ms) / 60000, 1) AS active_minutes,
    sum(statements) AS statements
FROM {db}.engagement FINAL
WHERE school = {school:String} AND grain = 'day'
  AND toDate(period_start) >= {from:Date} AND toDate(period_start) <= {to:Date}
GROUP BY course, learner, week
ORDER BY course, learner, week

-- Weekly active learners per course and cohort (a learner counts once per week however
-- many days or verbs), from the rollup: merging the daily learner sets is an exact union.
-- Parameters: school, from (Date), to (Date, inclusive).
SELECT
    course,
    cohort,
    toMonday(day) AS week,
    uniqExactMerge(learners) AS active_learners,
    uniqExactMerge(statements) AS statements
FROM {db}.activity_daily
WHERE school = {school:String} AND day >= {from:Date} AND day <= {to:Date}
GROUP BY course, cohort, week
ORDER BY course, cohort, week

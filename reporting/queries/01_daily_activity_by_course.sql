-- Daily activity per course of one school, from the rollup ClickHouse maintains
-- (activity_daily): statements, statements voided since, active learners, completions,
-- passed/failed attempts. Exact: the rollup holds sets of statement ids (see README).
-- Parameters: school, from (Date), to (Date, inclusive).
SELECT
    course,
    day,
    uniqExactMerge(statements) AS statements,
    uniqExactIfMerge(voided) AS voided,
    uniqExactMerge(learners) AS active_learners,
    uniqExactIfMerge(completed) AS completions,
    uniqExactIfMerge(passed) AS passed,
    uniqExactIfMerge(failed) AS failed
FROM {db}.activity_daily
WHERE school = {school:String} AND day >= {from:Date} AND day <= {to:Date}
GROUP BY course, day
ORDER BY course, day

-- Classical item statistics of scored activities (questions): attempts, learners,
-- success rate, mean scaled score and median response time. Reads statements_current:
-- one row per statement, voided statements excluded (xAPI Data 2.3.2).
-- Parameters: school, from (Date), to (Date, inclusive).
SELECT
    course,
    object_id AS activity,
    count() AS attempts,
    uniqExact(learner) AS learners,
    round(countIf(result_success = 1) / count(), 4) AS success_rate,
    round(avg(result_score_scaled), 4) AS mean_scaled_score,
    quantileExact(0.5)(result_duration_ms) AS median_duration_ms
FROM {db}.statements_current
WHERE school = {school:String}
  AND toDate(timestamp) >= {from:Date} AND toDate(timestamp) <= {to:Date}
  AND result_success IS NOT NULL
GROUP BY course, activity
ORDER BY course, activity

-- Course funnel: learners active in each course, learners who attempted a scored item,
-- passed at least one, and completed at least one activity (statements_current: voided
-- statements excluded).
-- Parameters: school.
SELECT
    course,
    uniqExact(learner) AS active_learners,
    uniqExactIf(learner, result_success IS NOT NULL) AS attempted,
    uniqExactIf(learner, result_success = 1) AS passed_any,
    uniqExactIf(learner, result_completion = 1) AS completed_any
FROM {db}.statements_current
WHERE school = {school:String}
GROUP BY course
ORDER BY course

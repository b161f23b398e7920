-- Where learners stand per skill: the latest BKT estimate of each learner (FINAL keeps the
-- highest version per learner and skill), averaged, with the share above the usual 0.95
-- mastery threshold and the observed correctness.
-- Parameters: school.
SELECT
    course,
    skill,
    count() AS learners,
    round(avg(p_mastery), 4) AS mean_p_mastery,
    round(countIf(p_mastery >= 0.95) / count(), 4) AS share_mastered,
    sum(observations) AS total_observations,
    round(sum(correct) / sum(observations), 4) AS observed_correct_rate
FROM {db}.mastery FINAL
WHERE school = {school:String} AND observations > 0
GROUP BY course, skill
ORDER BY course, skill

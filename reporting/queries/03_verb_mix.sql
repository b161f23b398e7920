-- What learners do: statements per verb and its share of the course's statements.
-- Parameters: school, from (Date), to (Date, inclusive).
SELECT
    v.course AS course,
    v.verb_id AS verb_id,
    v.n AS statements,
    round(v.n / t.total, 4) AS share
FROM (
    SELECT course, verb_id, uniqExactMerge(statements) AS n
    FROM {db}.activity_daily
    WHERE school = {school:String} AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY course, verb_id
) AS v
INNER JOIN (
    SELECT course, uniqExactMerge(statements) AS total
    FROM {db}.activity_daily
    WHERE school = {school:String} AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY course
) AS t ON v.course = t.course
ORDER BY course, statements DESC, verb_id

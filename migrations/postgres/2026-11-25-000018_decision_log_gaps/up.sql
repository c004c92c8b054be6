-- What the decision log adds so that nothing is lost without a trace:
-- `unknown_keys`: the request's members the PDP did not use (context keys and
-- properties the schema does not know, as a JSON array of paths such as
-- "context.consent"), so a PEP's typo shows up; NULL when there were none.
-- `skipped`: set only on a gap record, which stands for that many decisions of the
-- tenant that were not logged (a full queue under sampling, or a failed write);
-- NULL on a decision.
ALTER TABLE decision_log ADD COLUMN unknown_keys TEXT;
ALTER TABLE decision_log ADD COLUMN skipped BIGINT;

DROP TABLE rate_limits;
DROP TABLE one_time_tokens;
DROP TABLE sessions;

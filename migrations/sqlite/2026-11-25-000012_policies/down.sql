DROP TABLE decision_log;
DROP TABLE policy_sets;

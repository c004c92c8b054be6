DROP TABLE federated_sessions;

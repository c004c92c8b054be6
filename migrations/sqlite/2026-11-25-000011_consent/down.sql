DROP TABLE consent_events;
DROP TABLE consent_purposes;

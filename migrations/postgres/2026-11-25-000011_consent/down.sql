DROP TABLE consent_events;
DROP TABLE consent_purposes;
DROP FUNCTION IF EXISTS gatehouse_consent_no_update();

DROP INDEX user_emails_primary_value_skeleton;
DROP INDEX users_user_name_skeleton;
ALTER TABLE user_emails DROP COLUMN value_skeleton;
ALTER TABLE users DROP COLUMN user_name_skeleton;

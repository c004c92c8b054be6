-- Look-alike keys (UTS #39 confusable skeletons, computed in Rust): a userName or
-- primary email that looks like another user's in the same tenant is refused.
-- Existing rows start NULL (unique indexes let NULLs be) and are filled at start-up
-- by `users::backfill_skeletons`, since SQL cannot compute skeletons.
ALTER TABLE users ADD COLUMN user_name_skeleton TEXT;
ALTER TABLE user_emails ADD COLUMN value_skeleton TEXT;
CREATE UNIQUE INDEX users_user_name_skeleton ON users (tenant_id, user_name_skeleton);
CREATE UNIQUE INDEX user_emails_primary_value_skeleton ON user_emails (tenant_id, value_skeleton) WHERE is_primary;

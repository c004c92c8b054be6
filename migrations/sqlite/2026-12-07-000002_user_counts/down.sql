DROP TABLE user_counts;

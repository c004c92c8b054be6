DROP TABLE account_recoveries;

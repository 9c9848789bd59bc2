-- create_database: the embedded server's database `pnl`, made on first start.
--
-- No parameters. Returns nothing.
CREATE DATABASE pnl;
